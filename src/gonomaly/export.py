"""Export a fitted detector's whole scorer (image -> score, anomaly map) to ONNX.

With the closed-form gradient-origin encoder, z = 2 J^T (x - F(0)), a GON's scorer is a plain
feed-forward graph: a matrix product, the decoder, and the score. A GON that encodes by autograd
at inference could not be exported. The fused score's features, latent Gaussian and mixture
density are written out as tensor operations too, so the exported graph gives the same scores.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gonomaly.errors import GonomalyError
from gonomaly.io import atomic_write_bytes
from gonomaly.scoring import _EPS, error_map, gaussian_smooth, map_score, reconstruction_features


def _inverse_cholesky(covariance: np.ndarray) -> torch.Tensor:
    cholesky = np.linalg.cholesky(np.asarray(covariance, dtype=np.float64))
    return torch.from_numpy(np.linalg.inv(cholesky)).float()


class ExportedScorer(nn.Module):
    """images (N, C, H, W) in [0, 1] -> (scores (N,), anomaly maps (N, H, W))."""

    def __init__(self, detector):
        super().__init__()
        model = detector.model_.eval()
        self.is_gon = hasattr(model, "prepare_closed_form")
        # A GON decodes the closed-form latent; another model reconstructs x directly.
        self.network = model.decoder if self.is_gon else model
        self.fused = detector.score == "fused"
        self.score, self.error_map = detector.score, detector.error_map
        self.sigma, self.top_k = float(detector.sigma), int(detector.top_k)
        if self.is_gon:
            linearisation = model.closed_form or model.prepare_closed_form().closed_form
            self.register_buffer("origin", linearisation.image.clone())
            self.register_buffer("jacobian", linearisation.jacobian.clone())
            gaussian = detector.latent_gaussian_
            self.register_buffer("latent_mean", torch.from_numpy(gaussian.mean).float())
            self.register_buffer("latent_whitening", _inverse_cholesky(gaussian.covariance))
        if self.fused:
            scorer = detector.scorer_
            self.names = list(scorer.names)
            whitening = torch.stack([_inverse_cholesky(c) for c in scorer.covariances])
            log_det = np.array([2 * np.log(np.diag(np.linalg.cholesky(c))).sum()
                                for c in scorer.covariances])
            constant = (np.log(scorer.weights) - 0.5 * (log_det + len(self.names) * math.log(2 * math.pi)))
            self.register_buffer("mixture_means", torch.from_numpy(scorer.means).float())
            self.register_buffer("mixture_whitening", whitening)
            self.register_buffer("mixture_constant", torch.from_numpy(constant).float())

    def forward(self, x: torch.Tensor):
        if self.is_gon:
            z = 2 * (x.flatten(1) - self.origin) @ self.jacobian
            x_hat = self.network(z)
        else:
            x_hat = self.network(x)
        raw = error_map(x, x_hat, self.error_map)
        anomaly_map = gaussian_smooth(raw, self.sigma)
        if not self.fused:
            return map_score(raw, anomaly_map, self.score, self.top_k), anomaly_map
        features = reconstruction_features(x, x_hat)
        if self.is_gon:
            features["origin_distance"] = (x.flatten(1) - self.origin).pow(2).mean(1)
            features["latent_norm"] = z.norm(dim=1)
            centred = (z - self.latent_mean) @ self.latent_whitening.T
            features["latent_distance"] = centred.pow(2).sum(1).sqrt()
        logs = torch.log(torch.stack([features[n] for n in self.names], 1) + _EPS)
        # (N, K, F): whitened offsets of each image from each component's mean.
        offsets = logs[:, None, :] - self.mixture_means[None]
        whitened = torch.einsum("kfg,nkg->nkf", self.mixture_whitening, offsets)
        log_components = self.mixture_constant - 0.5 * whitened.pow(2).sum(2)
        return -torch.logsumexp(log_components, dim=1), anomaly_map


def export_onnx(detector, path: str | Path) -> Path:
    """Write the scorer as an ONNX graph with a dynamic batch dimension."""
    detector._check_fitted()
    if detector.model_name not in ("gon", "cae"):  # the graph above is the conv GON's or the CAE's
        raise GonomalyError(f"ONNX export supports the gon and cae models, not {detector.model_name}")
    scorer = ExportedScorer(detector).eval()
    example = torch.rand(2, *detector.image_shape_)
    import io
    import logging
    import warnings

    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it notes every torchvision operator it cannot find
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                scorer, (example,), input_names=["images"],
                output_names=["scores", "anomaly_maps"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, dynamo=True,
                verbose=False)
    except ImportError as exc:
        raise GonomalyError(f"ONNX export needs the 'onnx' extra: pip install 'gonomaly[onnx]' "
                            f"({exc})") from None
    finally:
        exporter_log.setLevel(level)
    buffer = io.BytesIO()
    program.save(buffer)
    return atomic_write_bytes(path, buffer.getvalue())
