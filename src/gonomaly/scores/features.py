"""Per-image features beyond the pixel error, which the fused score combines, and the
Gaussian over training latents that gives a latent's Mahalanobis distance.

Rotated, sheared or shrunken digits still look like digits, so a GON reconstructs them well and
their pixel error stays low. Other signals still see them: how far the latent lies from the
training latents, how far the image lies from F(0), the structural similarity of the
reconstruction.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gonomaly.scores.maps import ssim_map

RECONSTRUCTION_FEATURES = ("mse", "l1", "max_error", "dissimilarity")
ORIGIN_FEATURES = ("origin_distance",)
LATENT_FEATURES = ("latent_norm", "latent_distance")


def reconstruction_features(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image error features shared by every reconstruction model."""
    squared = (x_hat - x).pow(2).flatten(1)
    return {
        "mse": squared.mean(1),
        "l1": (x_hat - x).abs().flatten(1).mean(1),
        "max_error": squared.max(1).values,
        "dissimilarity": 1 - ssim_map(x, x_hat).flatten(1).mean(1),
    }


def whitening(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Cholesky factor L of a covariance and its inverse (which whitens: L^-1 (v - mean))."""
    cholesky = np.linalg.cholesky(np.asarray(covariance, dtype=np.float64))
    return cholesky, np.linalg.inv(cholesky)


class LatentGaussian(nn.Module):
    """A full-covariance Gaussian over training latents (Ledoit-Wolf shrinkage), in float64.

    ``forward(z)`` is a latent's Mahalanobis distance; ``sample`` draws latents for
    ``sample(n)`` of the latent detectors.
    """

    def __init__(self, mean: np.ndarray, covariance: np.ndarray):
        super().__init__()
        mean = np.asarray(mean, dtype=np.float64)
        covariance = np.asarray(covariance, dtype=np.float64)
        cholesky, inverse = whitening(covariance)
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("covariance", torch.from_numpy(covariance))
        self.register_buffer("cholesky", torch.from_numpy(cholesky))
        self.register_buffer("whitening", torch.from_numpy(inverse))

    @classmethod
    def fit(cls, latents: np.ndarray) -> "LatentGaussian":
        from sklearn.covariance import LedoitWolf

        estimate = LedoitWolf().fit(np.asarray(latents, dtype=np.float64))
        return cls(estimate.location_, estimate.covariance_)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        centred = z.to(self.mean.dtype) - self.mean
        return (centred @ self.whitening.T).pow(2).sum(1).sqrt()

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cholesky = self.cholesky.numpy()
        return self.mean.numpy() + rng.standard_normal((n, len(cholesky))) @ cholesky.T

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}mean": self.mean.numpy(), f"{prefix}covariance": self.covariance.numpy()}

    @classmethod
    def from_state(cls, state: dict, prefix: str, dim: int) -> "LatentGaussian":
        """Raises ValueError (or LinAlgError) unless the state is a finite Gaussian in ``dim``."""
        mean, covariance = state.get(f"{prefix}mean"), state.get(f"{prefix}covariance")
        if mean is None or covariance is None:
            raise ValueError("the latent Gaussian is missing")
        if mean.shape != (dim,) or covariance.shape != (dim, dim) or not (
                np.isfinite(mean).all() and np.isfinite(covariance).all()):
            raise ValueError(f"the latent Gaussian does not fit latent_dim {dim}")
        return cls(mean, covariance)
