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
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save as save_numpy
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from gonomaly import __version__
from gonomaly.data.arrays import as_image_array
from gonomaly.errors import GonomalyError
from gonomaly.io import atomic_write_bytes, atomic_write_json, sha256_file
from gonomaly.models import CAE, ConvGON
from gonomaly.scoring import SCORES, FusedScorer, LatentGaussian, reconstruction_features
from gonomaly.thresholds import ThresholdRule

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
TRAIN_ERRORS_FILE = "train_errors.npy"
SCORING_FILE = "scoring.safetensors"
CHECKPOINT_FORMAT = "gonomaly-checkpoint/1"
SCORE_BATCH_SIZE = 512


class ReconstructionDetector:
    """Shared training, scoring, thresholding and checkpointing. Subclasses name the model."""

    model_name: ClassVar[str]

    def __init__(self, *, epochs: int = 5, batch_size: int = 128, lr: float = 1e-3,
                 threshold: str = "mean-std:2", score: str = "mse", seed: int = 0,
                 progress: bool = False):
        self.epochs = epochs
        self.score = score
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
        if self.score not in SCORES:
            raise GonomalyError(f"score '{self.score}': unknown (use {' or '.join(SCORES)})")
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
        self._fit_scoring(x.numpy())
        self._set_threshold(rule)
        return self

    def fit_scoring(self, images) -> "ReconstructionDetector":
        """Refit the scoring (for the current ``score``) and the threshold on normal images,
        keeping the trained network: compare ``mse`` and ``fused`` without training twice."""
        self._check_fitted()
        if self.score not in SCORES:
            raise GonomalyError(f"score '{self.score}': unknown (use {' or '.join(SCORES)})")
        self._fit_scoring(as_image_array(images, "training images"))
        self._set_threshold(ThresholdRule.parse(self.threshold))
        return self

    def _fit_scoring(self, train: np.ndarray) -> None:
        """Fit what scoring needs beyond the network, on the normal training images alone."""
        self.scorer_ = None
        if self.score == "fused":
            self.scorer_ = FusedScorer.fit(self.features(train), seed=self.seed)
        self.train_errors_ = self.score_samples(train)

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
        if getattr(self.model_, "closed_form", False) is None:
            self.model_.prepare_closed_form()  # once after fit or load: exact and ~3x faster
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

    def _batch_features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return reconstruction_features(batch, self.model_(batch))

    @torch.no_grad()
    def features(self, images) -> dict[str, np.ndarray]:
        """Per-image scalar features that the fused score combines (see ``gonomaly.scoring``)."""
        parts = [self._batch_features(b) for b in self._batches(images, "images")]
        return {k: np.concatenate([p[k].double().numpy() for p in parts]) for k in parts[0]}

    @torch.no_grad()
    def score_samples(self, images) -> np.ndarray:
        """Per-image anomaly score, higher is more anomalous: the reconstruction MSE, or with
        ``score="fused"`` the negative log density of the image's features among normals."""
        if self.score == "fused":
            return self.scorer_.score(self.features(images))
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
        scoring_state = self._scoring_state()
        scoring = {"score": self.score}
        if scoring_state:
            atomic_write_bytes(directory / SCORING_FILE, save_numpy(scoring_state))
            scoring["sha256"] = sha256_file(directory / SCORING_FILE)
        if self.scorer_ is not None:
            scoring["features"] = self.scorer_.names
        config = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model_name,
            "image_shape": list(self.image_shape_),
            "hyperparameters": {"epochs": self.epochs, "batch_size": self.batch_size,
                                "lr": self.lr, "score": self.score, "seed": self.seed,
                                **self._model_hyperparameters()},
            "threshold": {"rule": str(self.threshold_rule_), "value": self.threshold_,
                          "train_errors": ThresholdRule.statistics(self.train_errors_)},
            "training": self.training_stats_,
            "scoring": scoring,
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
        detector._load_scoring_state(directory, config.get("scoring", {}))
        detector.threshold_rule_ = ThresholdRule.parse(threshold["rule"])
        detector.threshold_ = float(threshold["value"])
        detector.training_stats_ = config.get("training", {})
        history = directory / HISTORY_FILE
        detector.loss_history_ = json.loads(history.read_text())["loss"] if history.is_file() else []
        return detector


    def _scoring_state(self) -> dict[str, np.ndarray]:
        return self.scorer_.state() if self.scorer_ is not None else {}

    def _load_scoring_state(self, directory: Path, scoring: dict) -> None:
        self.scorer_ = None
        self._scoring_arrays = {}
        path = directory / SCORING_FILE
        if "sha256" in scoring:
            if not path.is_file() or sha256_file(path) != scoring["sha256"]:
                raise GonomalyError(f"{path}: missing, or sha256 does not match config.json")
            try:
                self._scoring_arrays = load_numpy(path)
            except (SafetensorError, OSError, ValueError) as exc:
                raise GonomalyError(f"{path}: cannot read safetensors ({exc})") from None
        if self.score == "fused":
            try:
                self.scorer_ = FusedScorer.from_state(self._scoring_arrays, scoring["features"])
            except (KeyError, ValueError, np.linalg.LinAlgError) as exc:
                raise GonomalyError(f"{path}: invalid fused-score state ({exc})") from None


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
    """Convolutional GON: latent by the gradient-origin step, never F(0).

    Beyond the pixel error, a GON offers its latent and its origin image F(0): ``score="fused"``
    adds the latent's Mahalanobis distance and norm and the image's distance to F(0) to the
    fused features. A Gaussian fitted to the training latents also gives ``sample(n)``.
    """

    model_name = "gon"

    def __init__(self, *, latent_dim: int = 100, width: int = 64, epochs: int = 5,
                 batch_size: int = 128, lr: float = 1e-3, threshold: str = "mean-std:2",
                 score: str = "mse", seed: int = 0, progress: bool = False):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, threshold=threshold,
                         score=score, seed=seed, progress=progress)
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

    def _fit_scoring(self, train: np.ndarray) -> None:
        self.latent_gaussian_ = LatentGaussian.fit(self.encode(train))
        super()._fit_scoring(train)

    def _batch_features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.model_.encode(batch)
        features = reconstruction_features(batch, self.model_.decode(z))
        origin = self.model_.decode(torch.zeros(1, self.latent_dim))
        features["origin_distance"] = (batch - origin).pow(2).flatten(1).mean(1)
        features["latent_norm"] = z.norm(dim=1)
        features["latent_distance"] = torch.from_numpy(self.latent_gaussian_.mahalanobis(z.numpy()))
        return features

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """n new images decoded from the Gaussian fitted to the training latents."""
        self._check_fitted()
        rng = np.random.default_rng(self.seed if seed is None else seed)
        z = torch.from_numpy(self.latent_gaussian_.sample(n, rng).astype(np.float32))
        return self.model_.decode(z).numpy()

    @torch.no_grad()
    def interpolate(self, a, b, steps: int = 8) -> np.ndarray:
        """Decode a spherical interpolation between the latents of images a and b."""
        za, zb = (torch.from_numpy(self.encode(np.asarray(v)[None])[0]).double() for v in (a, b))
        angle = torch.arccos(torch.clamp(torch.dot(za, zb) / (za.norm() * zb.norm()), -1, 1))
        t = torch.linspace(0, 1, steps, dtype=torch.float64)[:, None]
        if angle < 1e-6:
            z = (1 - t) * za + t * zb
        else:
            z = (torch.sin((1 - t) * angle) * za + torch.sin(t * angle) * zb) / torch.sin(angle)
        return self.model_.decode(z.float()).numpy()

    def _scoring_state(self) -> dict[str, np.ndarray]:
        return {**super()._scoring_state(), **self.latent_gaussian_.state("latent.")}

    def _load_scoring_state(self, directory: Path, scoring: dict) -> None:
        super()._load_scoring_state(directory, scoring)
        if "latent.mean" not in self._scoring_arrays:
            raise GonomalyError(f"{directory / SCORING_FILE}: the GON's latent Gaussian is missing")
        self.latent_gaussian_ = LatentGaussian.from_state(self._scoring_arrays, "latent.")


class CAEDetector(ReconstructionDetector):
    """The seed's convolutional autoencoder, behind the same interface."""

    model_name = "cae"

    def _build_model(self, image_shape):
        return CAE(image_shape)


DETECTORS: dict[str, type[ReconstructionDetector]] = {"gon": GONDetector, "cae": CAEDetector}
