"""The scoring path of a fitted model as one torch module: images -> (scores, anomaly maps).

The detector scores through it and the ONNX export traces it, so every formula (the
closed-form latent, the features, the latent Gaussian, the score) exists once.
"""

from __future__ import annotations

import torch
from torch import nn

from gonomaly.scores.base import ScoreInputs, Scorer
from gonomaly.scores.features import (
    LATENT_FEATURES,
    ORIGIN_FEATURES,
    RECONSTRUCTION_FEATURES,
    LatentGaussian,
    reconstruction_features,
)
from gonomaly.scores.maps import error_map, gaussian_smooth


def has_origin(model: nn.Module) -> bool:
    """A gradient-origin model, whose F(0) is a feature (prepared by ``prepare_closed_form``)."""
    return hasattr(model, "prepare_closed_form")


def feature_names(model: nn.Module, latent: LatentGaussian | None) -> list[str]:
    """The features ``ScoringGraph.features`` returns for this model."""
    return [*RECONSTRUCTION_FEATURES, *(ORIGIN_FEATURES if has_origin(model) else ()),
            *(LATENT_FEATURES if latent is not None else ())]


class ScoringGraph(nn.Module):
    """A model with ``encode`` / ``decode``, an error map, its smoothing and a scorer; with a
    ``latent`` Gaussian, the latent features too."""

    def __init__(self, model: nn.Module, scorer: Scorer | None, error_map: str, sigma: float,
                 latent: LatentGaussian | None = None):
        super().__init__()
        self.model, self.scorer, self.latent = model, scorer, latent
        self.error_map, self.sigma = error_map, float(sigma)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat, latent): the reconstruction always goes through the encoding."""
        z = self.model.encode(x)
        return self.model.decode(z), z

    def maps(self, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw and the smoothed anomaly maps, (B, H, W) each."""
        raw = error_map(x, x_hat, self.error_map)
        return raw, gaussian_smooth(raw, self.sigma)

    def features(self, x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        features = reconstruction_features(x, x_hat)
        if has_origin(self.model):  # F(0) (F(mu(0)) for the variational GON)
            features["origin_distance"] = (x.flatten(1) - self.model.closed_form.image).pow(2).mean(1)
        if self.latent is not None:
            features["latent_norm"] = z.norm(dim=1)
            features["latent_distance"] = self.latent(z)
        return features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_hat, z = self.reconstruct(x)
        raw, smoothed = self.maps(x, x_hat)
        features = self.features(x, x_hat, z) if self.scorer.needs_features else None
        return self.scorer(ScoreInputs(raw, smoothed, features)), smoothed
