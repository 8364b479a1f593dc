"""Image scores beyond the pixel error, and their fusion by a density fitted on normals only.

Rotated, sheared or shrunken digits still look like digits, so a GON reconstructs them well and
their pixel error stays low. Other signals still see them: how far the latent lies from the
training latents, how far the image lies from F(0), the structural similarity of the
reconstruction. ``FusedScorer`` fits a Gaussian mixture to the log of these per-image features
of the normal training images; an image's score is its negative log density. The number of
components is chosen by BIC on the same normal images, so no anomaly label is ever used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.mixture import GaussianMixture

from gonomaly.choices import ERROR_MAPS, MAP_SCORES, SCORES  # noqa: F401 - re-exported
from gonomaly.errors import GonomalyError

SSIM_WINDOW = 7
_EPS = 1e-6


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = SSIM_WINDOW) -> torch.Tensor:
    """Per-pixel SSIM over channels-averaged windows, as scikit-image's defaults (7x7 uniform
    window, sample covariance, data range 1), on the valid interior: (N, H-6, W-6)."""
    def mean(t):
        return F.avg_pool2d(t, window, stride=1)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    n = window * window
    mx, my = mean(x), mean(y)
    vx = (mean(x * x) - mx * mx) * n / (n - 1)
    vy = (mean(y * y) - my * my) * n / (n - 1)
    cxy = (mean(x * y) - mx * my) * n / (n - 1)
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(1)


def ssim_error_map(x: torch.Tensor, x_hat: torch.Tensor, window: int = SSIM_WINDOW) -> torch.Tensor:
    """1 - SSIM per pixel at the input resolution (N, H, W): the windows see a reflected border,
    as in the MVTec paper's SSIM autoencoder (an image's map depends on that image alone)."""
    pad = (window // 2,) * 4
    return 1 - ssim_map(F.pad(x, pad, mode="reflect"), F.pad(x_hat, pad, mode="reflect"), window)


def error_map(x: torch.Tensor, x_hat: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Per-pixel reconstruction error (N, H, W): squared error averaged over channels (``l2``)
    or 1 - SSIM (``ssim``), which sees structure where a plain difference sees only intensity."""
    return ssim_error_map(x, x_hat) if kind == "ssim" else (x_hat - x).pow(2).mean(1)


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of maps (N, H, W), truncated at 4 sigma, reflected border; a
    no-op for sigma = 0. Smoothing lets one noisy pixel count less than a coherent blob."""
    if sigma <= 0:
        return maps
    radius = min(int(4 * sigma + 0.5), min(maps.shape[1:]) - 1)
    t = torch.arange(-radius, radius + 1, dtype=maps.dtype)
    kernel = torch.exp(-t * t / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    out = F.conv2d(F.pad(maps[:, None], (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return out[:, 0]


def map_score(maps: torch.Tensor, smoothed: torch.Tensor, score: str, top_k: int) -> torch.Tensor:
    """An image's score from its anomaly map: the mean of the raw map (``mse``, the seed's), the
    maximum of the smoothed map (``max``) or the mean of its ``top_k`` largest pixels (``topk``)."""
    if score == "max":
        return smoothed.flatten(1).max(1).values
    if score == "topk":
        flat = smoothed.flatten(1)
        return flat.topk(min(top_k, flat.shape[1]), dim=1).values.mean(1)
    return maps.flatten(1).mean(1)


def reconstruction_features(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image error features shared by every reconstruction model."""
    squared = (x_hat - x).pow(2).flatten(1)
    return {
        "mse": squared.mean(1),
        "l1": (x_hat - x).abs().flatten(1).mean(1),
        "max_error": squared.max(1).values,
        "dissimilarity": 1 - ssim_map(x, x_hat).flatten(1).mean(1),
    }


class LatentGaussian:
    """A full-covariance Gaussian over training latents (Ledoit-Wolf shrinkage).

    Gives the Mahalanobis distance of a latent, and samples for ``GONDetector.sample``.
    """

    def __init__(self, mean: np.ndarray, covariance: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.covariance = np.asarray(covariance, dtype=np.float64)
        self._cholesky = np.linalg.cholesky(self.covariance)

    @classmethod
    def fit(cls, latents: np.ndarray) -> "LatentGaussian":
        from sklearn.covariance import LedoitWolf

        estimate = LedoitWolf().fit(np.asarray(latents, dtype=np.float64))
        return cls(estimate.location_, estimate.covariance_)

    def mahalanobis(self, latents: np.ndarray) -> np.ndarray:
        centred = (np.asarray(latents, dtype=np.float64) - self.mean).T
        whitened = np.linalg.solve(self._cholesky, centred)
        return np.sqrt((whitened ** 2).sum(0))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean + rng.standard_normal((n, len(self.mean))) @ self._cholesky.T

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}mean": self.mean, f"{prefix}covariance": self.covariance}

    @classmethod
    def from_state(cls, state: dict, prefix: str) -> "LatentGaussian":
        return cls(state[f"{prefix}mean"], state[f"{prefix}covariance"])


class FusedScorer:
    """Negative log density of log-features under a Gaussian mixture fitted on normal images."""

    COMPONENTS = (1, 2, 4, 8)

    def __init__(self, names: list[str], weights, means, covariances):
        self.names = list(names)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.covariances = np.asarray(covariances, dtype=np.float64)
        self._choleskies = np.linalg.cholesky(self.covariances)

    @staticmethod
    def _matrix(features: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
        return np.log(np.stack([np.asarray(features[n], np.float64) for n in names], 1) + _EPS)

    @classmethod
    def fit(cls, features: dict[str, np.ndarray], seed: int = 0) -> "FusedScorer":
        names = sorted(features)
        data = cls._matrix(features, names)
        if len(data) < 2 * len(names):
            raise GonomalyError(f"the fused score needs at least {2 * len(names)} normal training "
                                f"images, got {len(data)}")
        best = None
        for k in cls.COMPONENTS:
            if k > 1 and len(data) < 20 * k * len(names):
                break  # too few normal images to fit that many components
            mixture = GaussianMixture(k, covariance_type="full", reg_covar=1e-4,
                                      random_state=seed, n_init=1).fit(data)
            bic = mixture.bic(data)
            if best is None or bic < best[0]:
                best = (bic, mixture)
        mixture = best[1]
        return cls(names, mixture.weights_, mixture.means_, mixture.covariances_)

    def score(self, features: dict[str, np.ndarray]) -> np.ndarray:
        data = self._matrix(features, self.names)
        log_components = []
        for weight, mean, cholesky in zip(self.weights, self.means, self._choleskies):
            whitened = np.linalg.solve(cholesky, (data - mean).T)
            log_det = 2 * np.log(np.diag(cholesky)).sum()
            log_components.append(np.log(weight) - 0.5 * ((whitened ** 2).sum(0) + log_det
                                                          + len(mean) * np.log(2 * np.pi)))
        stacked = np.stack(log_components)
        peak = stacked.max(0)
        return -(peak + np.log(np.exp(stacked - peak).sum(0)))

    def state(self) -> dict[str, np.ndarray]:
        return {"fused.weights": self.weights, "fused.means": self.means,
                "fused.covariances": self.covariances}

    @classmethod
    def from_state(cls, state: dict, names: list[str]) -> "FusedScorer":
        return cls(names, state["fused.weights"], state["fused.means"], state["fused.covariances"])
