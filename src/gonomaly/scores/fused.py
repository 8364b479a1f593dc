"""``fused``: the fusion of per-image features by a density fitted on normals only.

A Gaussian mixture is fitted to the log of the features (see ``gonomaly.scores.features``) of
the normal training images; an image's score is its negative log density. The number of
components is chosen by BIC on the same normal images, so no anomaly label is ever used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from torch import nn

from gonomaly.errors import GonomalyError
from gonomaly.scores.base import ScoreInputs, Scorer, register
from gonomaly.scores.features import whitening

LOG_EPS = 1e-6  # keeps the log of a zero feature finite
COMPONENTS = (1, 2, 4, 8)


class MixtureDensity(nn.Module):
    """The negative log density of rows (N, F) under a full-covariance Gaussian mixture."""

    def __init__(self, weights, means, covariances):
        super().__init__()
        weights, means = np.asarray(weights, np.float64), np.asarray(means, np.float64)
        covariances = np.asarray(covariances, np.float64)
        factors = [whitening(c) for c in covariances]
        log_det = np.array([2 * np.log(np.diag(cholesky)).sum() for cholesky, _ in factors])
        constant = np.log(weights) - 0.5 * (log_det + means.shape[1] * math.log(2 * math.pi))
        self.register_buffer("weights", torch.from_numpy(weights))
        self.register_buffer("means", torch.from_numpy(means))
        self.register_buffer("covariances", torch.from_numpy(covariances))
        self.register_buffer("whitening", torch.from_numpy(np.stack([w for _, w in factors])))
        self.register_buffer("constant", torch.from_numpy(constant))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        offsets = rows[:, None, :] - self.means[None]  # (N, K, F) from each component's mean
        whitened = torch.einsum("kfg,nkg->nkf", self.whitening, offsets)
        return -torch.logsumexp(self.constant - 0.5 * whitened.pow(2).sum(2), dim=1)


def log_features(features: dict[str, torch.Tensor], names: list[str], dtype: torch.dtype) -> torch.Tensor:
    return torch.log(torch.stack([features[n].to(dtype) for n in names], 1) + LOG_EPS)


def fit_mixture(data: np.ndarray, seed: int) -> GaussianMixture:
    """The mixture with the lowest BIC among ``COMPONENTS`` (as many as the data supports)."""
    best = None
    for k in COMPONENTS:
        if k > 1 and len(data) < 20 * k * data.shape[1]:
            break  # too few normal images to fit that many components
        mixture = GaussianMixture(k, covariance_type="full", reg_covar=1e-4,
                                  random_state=seed, n_init=1).fit(data)
        bic = mixture.bic(data)
        if best is None or bic < best[0]:
            best = (bic, mixture)
    return best[1]


@register
class FusedScorer(Scorer):
    """Negative log density of log-features under a Gaussian mixture fitted on normal images."""

    name = "fused"
    needs_features = True
    learns_from_normals = True

    def __init__(self, names: list[str] | None = None, density: MixtureDensity | None = None,
                 **params: Any):
        super().__init__(**params)
        self.names = list(names or [])
        self.density = density

    def fit(self, features: Callable[[], dict[str, np.ndarray]], seed: int) -> "FusedScorer":
        values = features()
        self.names = sorted(values)
        data = log_features({k: torch.from_numpy(np.asarray(v)) for k, v in values.items()},
                            self.names, torch.float64).numpy()
        if len(data) < 2 * len(self.names):
            raise GonomalyError(f"the fused score needs at least {2 * len(self.names)} normal "
                                f"training images, got {len(data)}")
        mixture = fit_mixture(data, seed)
        self.density = MixtureDensity(mixture.weights_, mixture.means_, mixture.covariances_)
        return self

    def forward(self, inputs: ScoreInputs) -> torch.Tensor:
        return self.density(log_features(inputs.features, self.names, self.density.means.dtype))

    def state(self) -> dict[str, np.ndarray]:
        return {f"fused.{k}": getattr(self.density, k).numpy()
                for k in ("weights", "means", "covariances")}

    def config(self) -> dict[str, Any]:
        return {"features": self.names}

    @classmethod
    def from_state(cls, arrays, config, feature_names, **params) -> "FusedScorer":
        names = config.get("features")
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise ValueError("feature names missing")
        w, m, c = (np.asarray(arrays[k]) for k in ("fused.weights", "fused.means", "fused.covariances"))
        k, f = len(w), len(names)
        if not (w.shape == (k,) and k >= 1 and m.shape == (k, f) and c.shape == (k, f, f)
                and all(np.isfinite(a).all() for a in (w, m, c)) and (w > 0).all()):
            raise ValueError("shapes or values do not fit the feature names")
        unknown = set(names) - set(feature_names)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)[:3]}")
        return cls(names, MixtureDensity(w, m, c), **params)
