"""Anomaly detectors in the scikit-learn style: ``fit``, ``score_samples``, ``predict``.

A detector trains a reconstruction model on normal images only, scores an image by its
reconstruction error (mean squared error over pixels; per pixel for an anomaly map) and flags it
above ``threshold_``, which a threshold rule sets from the training errors alone.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from gonomaly import __version__
from gonomaly.data.arrays import as_image_array
from gonomaly.errors import GonomalyError
from gonomaly.io import atomic_write_bytes, atomic_write_json, sha256_file
from gonomaly.models import CAE, ConvGON
from gonomaly.thresholds import ThresholdRule

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
TRAIN_ERRORS_FILE = "train_errors.npy"
CHECKPOINT_FORMAT = "gonomaly-checkpoint/1"
SCORE_BATCH_SIZE = 512


class ReconstructionDetector:
    """Shared training, scoring, thresholding and checkpointing. Subclasses name the model."""

    model_name: ClassVar[str]

    def __init__(self, *, epochs: int = 5, batch_size: int = 64, lr: float = 1e-3,
                 threshold: str = "mean-std:2", seed: int = 0, progress: bool = False):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.threshold = threshold
        self.seed = seed
        self.progress = progress

    # -- what a subclass provides -------------------------------------------------------------
    def _build_model(self, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        raise NotImplementedError

    def _model_hyperparameters(self) -> dict[str, Any]:
        return {}

    # -- training -------------------------------------------------------------------------------
    def fit(self, images) -> "ReconstructionDetector":
        """Train on normal images, then set ``train_errors_`` and ``threshold_``."""
        rule = ThresholdRule.parse(self.threshold)
        x = torch.from_numpy(as_image_array(images, "training images"))
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise GonomalyError("epochs, batch size and learning rate must be positive")
        self.image_shape_ = tuple(int(s) for s in x.shape[1:])
        torch.manual_seed(self.seed)
        self.model_ = self._build_model(self.image_shape_)
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        order_rng = torch.Generator().manual_seed(self.seed)
        n, steps_per_epoch = len(x), -(-len(x) // self.batch_size)
        self.loss_history_: list[float] = []
        self.model_.train()
        start = time.perf_counter()
        with tqdm(total=self.epochs * n, unit="img", unit_scale=True, disable=not self.progress,
                  desc=f"train {self.model_name}", dynamic_ncols=True) as bar:
            for epoch in range(self.epochs):
                order = torch.randperm(n, generator=order_rng)
                for step in range(steps_per_epoch):
                    batch = x[order[step * self.batch_size:(step + 1) * self.batch_size]]
                    # Outer loss: per-sample sum over pixels, mean over the batch. Only the
                    # optimiser sees the batch mean; each latent depends on its own image.
                    loss = self.model_.training_loss(batch).mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    value = loss.item()
                    self.loss_history_.append(value)
                    bar.update(len(batch))
                    bar.set_postfix(epoch=f"{epoch + 1}/{self.epochs}", loss=f"{value:.3f}",
                                    refresh=False)
        seconds = time.perf_counter() - start
        self.model_.eval()
        self.training_stats_ = {
            "epochs": self.epochs, "steps": len(self.loss_history_), "n_train": n,
            "seconds": round(seconds, 3), "images_per_s": round(self.epochs * n / seconds, 1),
            "final_loss": self.loss_history_[-1],
        }
        self.train_errors_ = self.score_samples(x.numpy())
        self._set_threshold(rule)
        return self

    def _set_threshold(self, rule: ThresholdRule) -> None:
        self.threshold_rule_ = rule
        self.threshold_ = rule.fit(self.train_errors_)

    # -- scoring -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise GonomalyError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    def _batches(self, images, name: str):
        self._check_fitted()
        x = as_image_array(images, name)
        if tuple(x.shape[1:]) != self.image_shape_:
            raise GonomalyError(
                f"{name}: images of shape {tuple(x.shape[1:])} (C, H, W), the model expects "
                f"{self.image_shape_}"
            )
        self.model_.eval()
        for start in range(0, len(x), SCORE_BATCH_SIZE):
            yield torch.from_numpy(x[start:start + SCORE_BATCH_SIZE])

    @torch.no_grad()
    def reconstruct(self, images) -> np.ndarray:
        """Reconstructions (N, C, H, W) in [0, 1]."""
        return np.concatenate([self.model_(b).numpy() for b in self._batches(images, "images")])

    @torch.no_grad()
    def anomaly_map(self, images) -> np.ndarray:
        """Per-pixel squared error averaged over channels, (N, H, W)."""
        maps = [(self.model_(b) - b).pow(2).mean(1).numpy() for b in self._batches(images, "images")]
        return np.concatenate(maps)

    @torch.no_grad()
    def score_samples(self, images) -> np.ndarray:
        """Per-image reconstruction MSE; higher is more anomalous."""
        errors = [(self.model_(b) - b).pow(2).flatten(1).mean(1).numpy()
                  for b in self._batches(images, "images")]
        return np.concatenate(errors).astype(np.float64)

    def decision_function(self, images) -> np.ndarray:
        """Score minus threshold: positive means anomalous (pyod's convention)."""
        return self.score_samples(images) - self.threshold_

    def predict(self, images) -> np.ndarray:
        """1 for anomalous, 0 for normal."""
        return (self.score_samples(images) > self.threshold_).astype(np.int64)

    # -- checkpoints --------------------------------------------------------------------------
    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write weights (safetensors), config.json, history.json and the training errors.

        Every file is written atomically; config.json, written last, records the weights' hash.
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model_.state_dict().items()}
        atomic_write_bytes(directory / WEIGHTS_FILE, save(state))
        atomic_write_json(directory / HISTORY_FILE, {"loss": self.loss_history_})
        import io
        buffer = io.BytesIO()
        np.save(buffer, self.train_errors_, allow_pickle=False)
        atomic_write_bytes(directory / TRAIN_ERRORS_FILE, buffer.getvalue())
        config = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model_name,
            "image_shape": list(self.image_shape_),
            "hyperparameters": {"epochs": self.epochs, "batch_size": self.batch_size,
                                "lr": self.lr, "seed": self.seed, **self._model_hyperparameters()},
            "threshold": {"rule": str(self.threshold_rule_), "value": self.threshold_,
                          "train_errors": ThresholdRule.statistics(self.train_errors_)},
            "training": self.training_stats_,
            "weights_sha256": sha256_file(directory / WEIGHTS_FILE),
            "versions": {"gonomaly": __version__, "torch": torch.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
            **(metadata or {}),
        }
        atomic_write_json(directory / CONFIG_FILE, config)
        return directory

    @staticmethod
    def load(directory: str | Path) -> "ReconstructionDetector":
        """Load any detector saved by ``save``; refuses a modified or mismatched checkpoint."""
        directory = Path(directory)
        config = read_config(directory)
        cls = DETECTORS.get(config.get("model"))
        if cls is None:
            raise GonomalyError(f"{directory / CONFIG_FILE}: unknown model '{config.get('model')}'")
        try:
            params = dict(config["hyperparameters"])
            image_shape = tuple(int(s) for s in config["image_shape"])
            threshold = config["threshold"]
            detector = cls(**params, threshold=threshold["rule"])
            expected_hash = config["weights_sha256"]
        except (KeyError, TypeError, ValueError) as exc:
            raise GonomalyError(f"{directory / CONFIG_FILE}: invalid configuration ({exc})") from None
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise GonomalyError(f"{weights}: weights file missing")
        if sha256_file(weights) != expected_hash:
            raise GonomalyError(f"{weights}: sha256 does not match config.json (modified or truncated)")
        try:
            state = load_file(weights)
        except (SafetensorError, OSError, ValueError) as exc:
            raise GonomalyError(f"{weights}: cannot read safetensors ({exc})") from None
        detector.image_shape_ = image_shape
        detector.model_ = detector._build_model(image_shape)
        expected = {k: tuple(v.shape) for k, v in detector.model_.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        if expected != found:
            diff = sorted(set(expected.items()) ^ set(found.items()))[:3]
            raise GonomalyError(f"{weights}: tensors do not match the configured model (e.g. {diff})")
        detector.model_.load_state_dict(state)
        detector.model_.eval()
        errors_path = directory / TRAIN_ERRORS_FILE
        try:
            detector.train_errors_ = np.load(errors_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise GonomalyError(f"{errors_path}: cannot read training errors ({exc})") from None
        detector.threshold_rule_ = ThresholdRule.parse(threshold["rule"])
        detector.threshold_ = float(threshold["value"])
        detector.training_stats_ = config.get("training", {})
        history = directory / HISTORY_FILE
        detector.loss_history_ = json.loads(history.read_text())["loss"] if history.is_file() else []
        return detector


def read_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise GonomalyError(f"{path}: not found (is {directory} a gonomaly run folder?)")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GonomalyError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
        raise GonomalyError(f"{path}: not a {CHECKPOINT_FORMAT} configuration")
    return config


class GONDetector(ReconstructionDetector):
    """Convolutional GON: latent by the gradient-origin step, never F(0)."""

    model_name = "gon"

    def __init__(self, *, latent_dim: int = 100, width: int = 64, epochs: int = 5,
                 batch_size: int = 64, lr: float = 1e-3, threshold: str = "mean-std:2",
                 seed: int = 0, progress: bool = False):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, threshold=threshold,
                         seed=seed, progress=progress)
        self.latent_dim = latent_dim
        self.width = width

    def _build_model(self, image_shape):
        return ConvGON(image_shape, self.latent_dim, self.width)

    def _model_hyperparameters(self):
        return {"latent_dim": self.latent_dim, "width": self.width}

    @torch.no_grad()
    def encode(self, images) -> np.ndarray:
        """Gradient-origin latents (N, latent_dim)."""
        return np.concatenate([self.model_.encode(b).numpy() for b in self._batches(images, "images")])


class CAEDetector(ReconstructionDetector):
    """The seed's convolutional autoencoder, behind the same interface."""

    model_name = "cae"

    def _build_model(self, image_shape):
        return CAE(image_shape)


DETECTORS: dict[str, type[ReconstructionDetector]] = {"gon": GONDetector, "cae": CAEDetector}
