"""Anomaly detectors in the scikit-learn style: ``fit``, ``score_samples``, ``predict``.

A detector trains a reconstruction model on normal images only, scores an image by its
reconstruction error (mean squared error over pixels; per pixel for an anomaly map) and flags it
above ``threshold_``, which a threshold rule sets from the training errors alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy
from safetensors.torch import save
from tqdm.auto import tqdm

from gonomaly import __version__, distributed
from gonomaly.augment import augment_batch, parse_augment
from gonomaly.choices import LOSSES
from gonomaly.data.arrays import as_image_array
from gonomaly.errors import GonomalyError
from gonomaly.io import _json_default
from gonomaly.models import CAE, VAE, ConvGON, ImplicitGON, VariationalGON
from gonomaly.scoring import (
    ERROR_MAPS, SCORES, FusedScorer, LatentGaussian, error_map, gaussian_smooth, map_score,
    reconstruction_features,
)
from gonomaly.thresholds import ThresholdRule
from gonomaly.training import (
    MAX_JSON_BYTES, PROGRESS_FILE, RESUME_DIR, STAGING_DIR, Checkpointer, Progress, RunLock,
    StepInfo, StopSignals, TrainingState, check_tensors, file_identity, interrupted,
    load_safetensors, parse_json, read_bytes, read_checkpoint_config, refuse_checkpoint,
    remove_checkpoint, safetensors_header, sha256_bytes, write_run_files,
)

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
    default_lr: ClassVar[float] = 1e-3

    def __init__(self, *, epochs: int = 5, batch_size: int = 128, lr: float | None = None,
                 threshold: str = "mean-std:2", score: str = "mse", seed: int = 0,
                 progress: bool = False, error_map: str = "l2", sigma: float = 0.0,
                 top_k: int = 100, loss: str = "l2", augment: str = "", device: str = "cpu",
                 precision: str = "fp32"):
        self.epochs = epochs
        self.score = score
        self.batch_size = batch_size
        self.lr = self.default_lr if lr is None else lr
        self.threshold = threshold
        self.seed = seed
        self.progress = progress
        self.device = device  # where to train and score; like progress, not saved
        self.precision = precision  # fp32, or bf16 autocast for training on CUDA
        # Pixel anomaly maps: the error per pixel (l2 or ssim), Gaussian-smoothed by sigma
        # pixels; score "max" / "topk" read the smoothed map (top_k pixels for "topk").
        self.error_map = error_map
        self.sigma = sigma
        self.top_k = top_k
        self.loss = loss  # training loss: l2, or l2+ssim (1 - SSIM per pixel added)
        self.augment = augment  # training augmentation: "" or e.g. "hflip,vflip,rot90"

    def _check_options(self) -> None:
        if self.score not in SCORES:
            raise GonomalyError(f"score '{self.score}': unknown (use {', '.join(SCORES)})")
        if self.error_map not in ERROR_MAPS:
            raise GonomalyError(f"error_map '{self.error_map}': unknown (use {', '.join(ERROR_MAPS)})")
        if self.loss not in LOSSES:
            raise GonomalyError(f"loss '{self.loss}': unknown (use {', '.join(LOSSES)})")
        if not (isinstance(self.sigma, (int, float)) and 0 <= self.sigma <= 64):
            raise GonomalyError(f"sigma {self.sigma}: must lie in [0, 64] pixels")
        if not (isinstance(self.top_k, int) and self.top_k >= 1):
            raise GonomalyError(f"top_k {self.top_k}: must be a positive integer")
        parse_augment(self.augment)

    # -- what a subclass provides -------------------------------------------------------------
    def _build_model(self, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        raise NotImplementedError

    def _model_hyperparameters(self) -> dict[str, Any]:
        return {}

    # -- training -------------------------------------------------------------------------------
    def fit(self, images, *, checkpoint_dir: str | Path | None = None,
            checkpoint_every: int | None = None, checkpoint_minutes: float | None = None,
            resume: bool = False, checkpoint_metadata: dict[str, Any] | None = None,
            on_step: Callable[[StepInfo], bool | None] | None = None) -> "ReconstructionDetector":
        """Train on normal images, then set ``train_errors_`` and ``threshold_``.

        With ``checkpoint_dir`` (a run folder, locked for this process while training) SIGINT
        and SIGTERM stop training after the current optimizer step and write a resumable
        checkpoint to ``checkpoint_dir/resume`` before raising ``TrainingInterrupted``; so does
        an ``on_step`` callback that returns True. ``checkpoint_every`` (steps) and
        ``checkpoint_minutes`` also write one periodically. ``resume=True`` continues the
        checkpoint there: the result is bit-identical to an uninterrupted fit.
        """
        rule = ThresholdRule.parse(self.threshold)
        self._check_options()
        x = torch.from_numpy(as_image_array(images, "training images"))
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise GonomalyError("epochs, batch size and learning rate must be positive")
        if checkpoint_dir is None and (resume or checkpoint_every or checkpoint_minutes):
            raise GonomalyError("resume and periodic checkpoints need a checkpoint_dir")
        world = distributed.world()
        if world.distributed and checkpoint_dir is not None:
            raise GonomalyError(f"checkpoints and resume are not supported in a distributed "
                                f"training (world size {world.size}); train without them")
        distributed.check_precision(self.precision, distributed.resolve_device(self.device))
        self.image_shape_ = tuple(int(s) for s in x.shape[1:])
        self._checkpoint_dir = None  # where save() may remove a finished training's checkpoint
        checkpoints = None
        with contextlib.ExitStack() as stack:
            if checkpoint_dir is not None:
                stack.enter_context(RunLock(checkpoint_dir))
                checkpoints = Checkpointer(checkpoint_dir, self._resume_config(x, checkpoint_metadata),
                                           checkpoint_every, checkpoint_minutes)
                if not resume:
                    refuse_checkpoint(checkpoint_dir)
                self._checkpoint_dir = Path(checkpoint_dir)
            seconds = self._train_network(x, checkpoints, resume, on_step)
        n = len(x)
        self.training_stats_ = {
            "epochs": self.epochs, "steps": len(self.loss_history_), "n_train": n,
            "seconds": round(seconds, 3), "images_per_s": round(self.epochs * n / seconds, 1),
            "final_loss": self.loss_history_[-1], "device": str(self.model_device_),
            "precision": self.precision, "world_size": world.size,
            "global_batch_size": self.batch_size * world.size,
        }
        self._fit_scoring(x.numpy())
        self._set_threshold(rule)
        return self

    def _train_network(self, x: torch.Tensor, checkpoints: Checkpointer | None, resume: bool,
                       on_step) -> float:
        """The optimisation loop; returns the training seconds (of all sessions when resumed).

        The random calls are those of a plain loop (seed, model init, one ``randperm`` of the
        batch-order generator per epoch), so checkpoints change nothing; a checkpoint keeps that
        generator's state from before the current epoch's permutation, which a resumed run
        recomputes, skipping the steps already done.
        """
        torch.manual_seed(self.seed)
        self.model_ = self._build_model(self.image_shape_)  # on the CPU: the same on every device
        self.model_device_ = distributed.resolve_device(self.device)
        self.model_.to(self.model_device_)
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        order_rng = torch.Generator().manual_seed(self.seed)
        # Under torchrun: DDP, and this rank's share of the global batches (batch_size x world).
        trainer = distributed.TrainingStep(self.model_, len(x), self.batch_size, self.model_device_,
                                           self.precision, self.seed, loss=self._training_loss)
        global_batch = self.batch_size * trainer.world.size
        n, steps_per_epoch = len(x), -(-len(x) // global_batch)
        done = Progress()
        if resume:
            state = checkpoints.load()
            done = state.restore(self.model_, optimizer, order_rng, checkpoints.run_dir / RESUME_DIR)
            if not (done.epoch < self.epochs and done.step < steps_per_epoch
                    or done.epoch == self.epochs and done.step == 0) or \
                    done.global_step != done.epoch * steps_per_epoch + done.step:
                raise GonomalyError(f"{checkpoints.run_dir / RESUME_DIR}: progress (epoch "
                                    f"{done.epoch}, step {done.step}) does not fit this training")
        self.loss_history_: list[float] = done.loss_history
        self.model_.train()
        start = time.perf_counter()
        elapsed = lambda: done.elapsed_s + time.perf_counter() - start  # noqa: E731
        with StopSignals(enabled=checkpoints is not None) as stop, \
                tqdm(total=self.epochs * n, unit="img", unit_scale=True,
                     disable=not (self.progress and trainer.world.main),
                     initial=min(done.epoch * n + done.step * self.batch_size, self.epochs * n),
                     desc=f"train {self.model_name}", dynamic_ncols=True) as bar:
            for epoch in range(done.epoch, self.epochs):
                epoch_rng_state = order_rng.get_state()  # before this epoch's permutation
                order = torch.randperm(n, generator=order_rng)
                for step in range(done.step if epoch == done.epoch else 0, steps_per_epoch):
                    batch = augment_batch(x[trainer.indices(order, step, self.batch_size)],
                                          self.augment, self.seed, len(self.loss_history_))
                    # Outer loss: per-sample sum over pixels, mean over the batch. Only the
                    # optimiser sees the batch mean; each latent depends on its own image.
                    count = trainer.global_count(step)
                    loss = trainer.loss(batch, count)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    value = trainer.value(loss)
                    self.loss_history_.append(value)
                    bar.update(count)
                    bar.set_postfix(epoch=f"{epoch + 1}/{self.epochs}", loss=f"{value:.3f}",
                                    refresh=False)
                    # The step is complete: only now may a stop request or a checkpoint act.
                    global_step = len(self.loss_history_)
                    if on_step is not None and on_step(StepInfo(epoch, step, global_step, value)):
                        stop.request()
                    if checkpoints is not None and (stop.requested or checkpoints.due(global_step)):
                        last = step + 1 == steps_per_epoch
                        progress = Progress(epoch + last, 0 if last else step + 1, global_step,
                                            elapsed(), list(self.loss_history_))
                        checkpoints.save(TrainingState.capture(
                            self.model_, optimizer, order_rng.get_state() if last else epoch_rng_state,
                            progress, checkpoints.config))
                    if stop.requested:
                        raise interrupted(
                            stop.signum, checkpoints and checkpoints.run_dir,
                            f"after epoch {epoch + 1}/{self.epochs}, step {step + 1}/{steps_per_epoch}")
        self.model_.eval()
        return elapsed()

    def _training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Per-sample training loss: the model's own (squared error), or with ``loss="l2+ssim"``
        the squared error plus 1 - SSIM summed over pixels (structure, as the MVTec paper's
        SSIM autoencoder; the GON's inner gradient step stays the squared error)."""
        if self.loss == "l2":
            return self.model_.training_loss(batch)
        if getattr(self.model_, "training_reconstruction", None) is None:
            raise GonomalyError(f"loss '{self.loss}': not available for {self.model_name} "
                                "(its training loss has a KL term); use loss l2")
        x_hat = self.model_.training_reconstruction(batch)
        return ((x_hat - batch).pow(2).flatten(1).sum(1)
                + error_map(batch, x_hat, "ssim").flatten(1).sum(1))

    def _hyperparameters(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "score": self.score, "seed": self.seed, "error_map": self.error_map,
                "sigma": self.sigma, "top_k": self.top_k, "loss": self.loss,
                "augment": self.augment, **self._model_hyperparameters()}

    def _resume_config(self, x: torch.Tensor, metadata: dict[str, Any] | None) -> dict[str, Any]:
        """What a checkpoint must have been made with to be resumed by this fit."""
        return {"model": self.model_name, "image_shape": list(self.image_shape_),
                "hyperparameters": self._hyperparameters(), "threshold": self.threshold,
                "n_train": len(x), "data_sha256": hashlib.sha256(x.numpy().tobytes()).hexdigest(),
                "metadata": metadata or {}}

    @staticmethod
    def resume(directory: str | Path, images, *, checkpoint_every: int | None = None,
               checkpoint_minutes: float | None = None, progress: bool = False,
               on_step: Callable[[StepInfo], bool | None] | None = None,
               checkpoint_metadata: dict[str, Any] | None = None, device: str = "cpu",
               precision: str = "fp32") -> "ReconstructionDetector":
        """Continue the interrupted training in ``directory`` on the same ``images``: the
        detector's class and hyper-parameters come from the checkpoint (and so does the
        metadata kept in later checkpoints, unless ``checkpoint_metadata`` replaces it)."""
        config = read_checkpoint_config(directory)
        detector = _detector_from_config(config, Path(directory) / RESUME_DIR / PROGRESS_FILE,
                                         config.get("threshold"))
        detector.progress, detector.device, detector.precision = progress, device, precision
        return detector.fit(images, checkpoint_dir=directory, resume=True,
                            checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
                            checkpoint_metadata=checkpoint_metadata or config.get("metadata"),
                            on_step=on_step)

    def fit_scoring(self, images) -> "ReconstructionDetector":
        """Refit the scoring (for the current ``score``) and the threshold on normal images,
        keeping the trained network: compare ``mse`` and ``fused`` without training twice."""
        self._check_fitted()
        self._check_options()
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
    def to(self, device: str | torch.device) -> "ReconstructionDetector":
        """Score (and train again) on ``device``: cpu, cuda or auto. Returns self."""
        self._check_fitted()
        self.model_device_ = distributed.resolve_device(device)
        self.device = str(device)
        self.model_.to(self.model_device_)
        return self

    def _device(self) -> torch.device:
        return getattr(self, "model_device_", torch.device("cpu"))

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
        device = self._device()
        if getattr(self.model_, "closed_form", False) is None:
            self.model_.prepare_closed_form()  # once after fit or load: exact and ~3x faster
        with tqdm(total=len(x), unit="img", unit_scale=True, desc=f"score {self.model_name}",
                  disable=not self.progress or len(x) < 5000, dynamic_ncols=True,
                  leave=False) as bar:
            for start in range(0, len(x), SCORE_BATCH_SIZE):
                yield torch.from_numpy(x[start:start + SCORE_BATCH_SIZE]).to(device)
                bar.update(min(SCORE_BATCH_SIZE, len(x) - start))

    @torch.no_grad()
    def reconstruct(self, images, size: int | tuple[int, int] | None = None) -> np.ndarray:
        """Reconstructions (N, C, H, W) in [0, 1]. Only the implicit GON renders at another
        ``size``; the others refuse it rather than resample."""
        self._check_fitted()
        wanted = None if size is None else tuple((size, size) if isinstance(size, int) else size)
        if wanted is not None and wanted != tuple(self.image_shape_[1:]):
            raise GonomalyError(f"{self.model_name}: renders only at its training size "
                                f"{self.image_shape_[1]}x{self.image_shape_[2]}, not {size} "
                                f"(the implicit GON renders at any size)")
        return np.concatenate([self.model_(b).cpu().numpy() for b in self._batches(images, "images")])

    def _maps(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw and the smoothed anomaly maps of a batch, (B, H, W) each."""
        raw = error_map(batch, self.model_(batch), self.error_map)
        return raw, gaussian_smooth(raw, self.sigma)

    @torch.no_grad()
    def anomaly_map(self, images) -> np.ndarray:
        """Per-pixel error at the input resolution, (N, H, W): the squared error averaged over
        channels (or 1 - SSIM with ``error_map="ssim"``), Gaussian-smoothed by ``sigma``."""
        return np.concatenate([self._maps(b)[1].cpu().numpy() for b in self._batches(images, "images")])

    def _batch_features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return reconstruction_features(batch, self.model_(batch))

    @torch.no_grad()
    def features(self, images) -> dict[str, np.ndarray]:
        """Per-image scalar features that the fused score combines (see ``gonomaly.scoring``)."""
        parts = [self._batch_features(b) for b in self._batches(images, "images")]
        return {k: np.concatenate([p[k].double().cpu().numpy() for p in parts]) for k in parts[0]}

    @torch.no_grad()
    def score_samples(self, images) -> np.ndarray:
        """Per-image anomaly score, higher is more anomalous: the mean of the error map (the
        reconstruction MSE with the default l2 map), the maximum (``max``) or the mean of the
        ``top_k`` largest pixels (``topk``) of the smoothed map, or with ``score="fused"`` the
        negative log density of the image's features among normals."""
        if self.score == "fused":
            return self.scorer_.score(self.features(images))
        errors = [map_score(*self._maps(b), self.score, self.top_k).cpu().numpy()
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

        config.json, written last, records every other file's sha256. The files are staged in
        ``.saving/`` and then renamed into place (``gonomaly.training.write_run_files``), so
        neither a crash nor a concurrent ``load`` ever sees a mix of two saves. The run folder
        is locked against other writers meanwhile, and a resume checkpoint that ``fit`` left
        there is removed once the folder is complete.
        """
        self._check_fitted()
        directory = Path(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        files = {WEIGHTS_FILE: save(state), HISTORY_FILE: _json_bytes({"loss": self.loss_history_})}
        buffer = io.BytesIO()
        np.save(buffer, self.train_errors_, allow_pickle=False)
        files[TRAIN_ERRORS_FILE] = buffer.getvalue()
        scoring_state = self._scoring_state()
        scoring = {"score": self.score}
        if scoring_state:
            files[SCORING_FILE] = save_numpy(scoring_state)
            scoring["sha256"] = sha256_bytes(files[SCORING_FILE])
        if self.scorer_ is not None:
            scoring["features"] = self.scorer_.names
        config = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model_name,
            "image_shape": list(self.image_shape_),
            "hyperparameters": self._hyperparameters(),
            "threshold": {"rule": str(self.threshold_rule_), "value": self.threshold_,
                          "train_errors": ThresholdRule.statistics(self.train_errors_)},
            "training": self.training_stats_,
            "scoring": scoring,
            "weights_sha256": sha256_bytes(files[WEIGHTS_FILE]),
            "history_sha256": sha256_bytes(files[HISTORY_FILE]),
            "train_errors_sha256": sha256_bytes(files[TRAIN_ERRORS_FILE]),
            "versions": {"gonomaly": __version__, "torch": torch.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
            **(metadata or {}),
        }
        files[CONFIG_FILE] = _json_bytes(config)
        with RunLock(directory):
            write_run_files(directory, files)
            checkpoint_dir = getattr(self, "_checkpoint_dir", None)
            if checkpoint_dir is not None and checkpoint_dir.resolve() == directory.resolve():
                remove_checkpoint(directory)  # the training is complete
        return directory

    @staticmethod
    def load(directory: str | Path) -> "ReconstructionDetector":
        """Load any detector saved by ``save``; refuses a modified or mismatched checkpoint.

        Every file is checked against the sha256 that config.json records, and every tensor's
        name, dtype and shape against the configured model, before anything is allocated.
        Files that disagree because a writer is replacing them right now (a newer config.json,
        or a complete staged set in ``.saving/``) are read again, so a concurrent ``save`` never
        breaks a load; nothing is ever unpickled.
        """
        directory = Path(directory)
        for attempt in range(LOAD_ATTEMPTS):
            try:
                return _load_run(directory)
            except _FilesChanged as exc:
                staged = directory / STAGING_DIR
                if (staged / CONFIG_FILE).is_file():  # a save is being published, or crashed doing so
                    try:
                        return _load_run(staged)
                    except GonomalyError:
                        pass
                elif file_identity(directory / CONFIG_FILE) == exc.config_id:
                    raise GonomalyError(str(exc)) from None  # no writer: the folder is broken
                problem = str(exc)
                time.sleep(0.02 * (attempt + 1))
        raise GonomalyError(f"{problem} (still changing after {LOAD_ATTEMPTS} reads)")

    def _scoring_state(self) -> dict[str, np.ndarray]:
        return self.scorer_.state() if self.scorer_ is not None else {}

    def _feature_names(self) -> list[str]:
        """The names ``features`` returns (checked against a loaded fused score)."""
        x = torch.zeros(1, 1, 8, 8)
        return list(reconstruction_features(x, x))

    def _load_scoring_state(self, directory: Path, scoring: dict, arrays: dict[str, np.ndarray]) -> None:
        self.scorer_ = None
        path = directory / SCORING_FILE
        if self.score == "fused":
            names = scoring.get("features")
            try:
                if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
                    raise ValueError("feature names missing")
                w, m, c = (np.asarray(arrays[k]) for k in ("fused.weights", "fused.means", "fused.covariances"))
                k, f = len(w), len(names)
                if not (w.shape == (k,) and k >= 1 and m.shape == (k, f) and c.shape == (k, f, f)
                        and all(np.isfinite(a).all() for a in (w, m, c)) and (w > 0).all()):
                    raise ValueError("shapes or values do not fit the feature names")
                unknown = set(names) - set(self._feature_names())
                if unknown:
                    raise ValueError(f"unknown features {sorted(unknown)[:3]}")
                self.scorer_ = FusedScorer.from_state(arrays, names)
            except (KeyError, ValueError, TypeError, np.linalg.LinAlgError) as exc:
                raise GonomalyError(f"{path}: invalid fused-score state ({exc})") from None


class _FilesChanged(GonomalyError):
    """A run folder's file disagrees with config.json (or is missing): either the folder is
    broken, or a writer is replacing it right now."""

    def __init__(self, message: str, config_id):
        super().__init__(message)
        self.config_id = config_id


LOAD_ATTEMPTS = 10
MAX_SIDE = 16384
_INT_HYPERPARAMETERS = {"epochs": 10**7, "batch_size": 10**7, "latent_dim": 1 << 16, "width": 1 << 16,
                        "fourier_features": 16, "top_k": 1 << 30}
_INT_MINIMUM = {"fourier_features": 0}  # 0: raw coordinates
# The other hyper-parameters: a check per name (a value that fails it is refused).
_CHECKS = {
    "score": lambda v: v in SCORES, "error_map": lambda v: v in ERROR_MAPS,
    "loss": lambda v: v in LOSSES,
    "sigma": lambda v: type(v) in (int, float) and math.isfinite(v) and 0 <= v <= 64,
    "augment": lambda v: isinstance(v, str) and len(v) < 100 and _valid_augment(v),
}


def _valid_augment(text: str) -> bool:
    try:
        parse_augment(text)
    except GonomalyError:
        return False
    return True


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode("utf-8")


def _detector_from_config(config: dict[str, Any], path: Path,
                          threshold: Any = None) -> "ReconstructionDetector":
    """A detector from a saved configuration, every field type- and range-checked."""
    name = config.get("model")
    cls = DETECTORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise GonomalyError(f"{path}: unknown model '{str(name)[:80]}'")
    params = config.get("hyperparameters")
    if not isinstance(params, dict):
        raise GonomalyError(f"{path}: invalid configuration (hyperparameters is not an object)")
    for key, value in params.items():
        if key in _INT_HYPERPARAMETERS:
            ok = type(value) is int and _INT_MINIMUM.get(key, 1) <= value <= _INT_HYPERPARAMETERS[key]
        elif key == "seed":
            ok = type(value) is int and abs(value) < 2**63
        elif key == "lr":
            ok = type(value) in (int, float) and math.isfinite(value) and value > 0
        elif key in _CHECKS:
            ok = _CHECKS[key](value)
        else:
            ok = False
        if not ok:
            raise GonomalyError(f"{path}: invalid configuration (hyperparameter {str(key)[:40]} = "
                                f"{str(value)[:40]!s})")
    rule = threshold if threshold is not None else "mean-std:2"
    if not isinstance(rule, str):
        raise GonomalyError(f"{path}: invalid configuration (threshold rule is not a string)")
    try:
        ThresholdRule.parse(rule)
        return cls(**params, threshold=rule)
    except (GonomalyError, TypeError) as exc:
        raise GonomalyError(f"{path}: invalid configuration ({exc})") from None


def _image_shape(config: dict[str, Any], path: Path) -> tuple[int, int, int]:
    shape = config.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(s) is int for s in shape)
            and shape[0] in (1, 3) and all(1 <= s <= MAX_SIDE for s in shape[1:])):
        raise GonomalyError(f"{path}: invalid configuration (image_shape {str(shape)[:60]})")
    return tuple(shape)


def _build(detector: "ReconstructionDetector", image_shape, path: Path, device=None) -> torch.nn.Module:
    try:
        with torch.device(device) if device else contextlib.nullcontext():
            return detector._build_model(image_shape)
    except (ValueError, RuntimeError) as exc:
        raise GonomalyError(f"{path}: the configured model cannot be built ({exc})") from None


def _load_run(folder: Path) -> "ReconstructionDetector":
    """Load the run files in ``folder`` (a run folder, or its staged ``.saving`` set)."""
    config_path = folder / CONFIG_FILE
    config_id = file_identity(config_path)
    config = read_config(folder)

    def verified(name: str, digest: Any, what: str) -> bytes:
        path = folder / name
        if digest is not None and not isinstance(digest, str):
            raise GonomalyError(f"{config_path}: invalid configuration (sha256 of {name})")
        if not path.is_file():
            raise _FilesChanged(f"{path}: {what} missing", config_id)
        data = read_bytes(path, what)
        if digest is not None and sha256_bytes(data) != digest:
            raise _FilesChanged(f"{path}: sha256 does not match config.json (modified or truncated)",
                                config_id)
        return data

    threshold = config.get("threshold")
    if not (isinstance(threshold, dict) and isinstance(threshold.get("rule"), str)
            and type(threshold.get("value")) in (int, float) and math.isfinite(threshold["value"])):
        raise GonomalyError(f"{config_path}: invalid configuration (threshold)")
    detector = _detector_from_config(config, config_path, threshold["rule"])
    image_shape = _image_shape(config, config_path)
    scoring = config.get("scoring", {})
    if not isinstance(scoring, dict) or "weights_sha256" not in config:
        raise GonomalyError(f"{config_path}: invalid configuration (scoring or weights_sha256)")
    weights = folder / WEIGHTS_FILE
    data = verified(WEIGHTS_FILE, config["weights_sha256"], "weights file")
    skeleton = _build(detector, image_shape, config_path, device="meta")  # shapes, no memory
    check_tensors(safetensors_header(data, weights), skeleton.state_dict(), weights,
                  "the configured model")
    state = load_safetensors(data, weights)
    detector.image_shape_ = image_shape
    detector.model_ = _build(detector, image_shape, config_path)
    detector.model_.load_state_dict(state)
    detector.model_.eval()
    errors_path = folder / TRAIN_ERRORS_FILE
    detector.train_errors_ = _read_train_errors(
        verified(TRAIN_ERRORS_FILE, config.get("train_errors_sha256"), "training errors"), errors_path)
    arrays = {}
    if "sha256" in scoring:
        path = folder / SCORING_FILE
        blob = verified(SCORING_FILE, scoring["sha256"], "scoring state")
        safetensors_header(blob, path)
        try:
            arrays = load_numpy(blob)
        except (SafetensorError, ValueError, TypeError) as exc:
            raise GonomalyError(f"{path}: cannot read safetensors ({exc})") from None
    detector._load_scoring_state(folder, scoring, arrays)
    detector.threshold_rule_ = ThresholdRule.parse(threshold["rule"])
    detector.threshold_ = float(threshold["value"])
    training = config.get("training", {})
    detector.training_stats_ = training if isinstance(training, dict) else {}
    history = folder / HISTORY_FILE
    detector.loss_history_ = []
    if "history_sha256" in config or history.is_file():
        doc = parse_json(verified(HISTORY_FILE, config.get("history_sha256"), "loss history"), history)
        loss = doc.get("loss") if isinstance(doc, dict) else None
        if not (isinstance(loss, list) and all(type(v) in (int, float) for v in loss)):
            raise GonomalyError(f"{history}: invalid loss history")
        detector.loss_history_ = [float(v) for v in loss]
    return detector


def _read_train_errors(data: bytes, path: Path) -> np.ndarray:
    """A 1-D float array from .npy bytes; the header is checked against the size first."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(buffer)
        if dtype.hasobject or dtype.kind != "f" or len(shape) != 1 or not 1 <= shape[0]:
            raise ValueError(f"expected a 1-D float array, found {dtype} {shape}")
        if shape[0] * dtype.itemsize != len(data) - buffer.tell():
            raise ValueError(f"header says {shape[0]} values, the file holds {len(data) - buffer.tell()} bytes")
        errors = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float64)
    except Exception as exc:  # noqa: BLE001 - numpy's header parser (tokenize, ast) raises many types
        raise GonomalyError(f"{path}: cannot read training errors ({' '.join(str(exc).split())[:200]})") from None
    if not np.isfinite(errors).all():
        raise GonomalyError(f"{path}: training errors contain NaN or inf")
    return errors


def read_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise GonomalyError(f"{path}: not found (is {directory} a gonomaly run folder?)")
    config = parse_json(read_bytes(path, "configuration", MAX_JSON_BYTES), path)
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
        raise GonomalyError(f"{path}: not a {CHECKPOINT_FORMAT} configuration")
    return config


class LatentDetector(ReconstructionDetector):
    """A detector whose model encodes every image to a latent vector (the GONs and the VAE).

    Beyond the pixel error it offers the latent: ``score="fused"`` adds the latent's
    Mahalanobis distance and norm under a Gaussian fitted to the training latents, which also
    gives ``sample(n)``; ``interpolate(a, b, steps)`` decodes a spherical interpolation.
    """

    model_class: ClassVar[type[torch.nn.Module]]
    default_latent_dim: ClassVar[int] = 100
    default_width: ClassVar[int] = 64
    sample_from_prior: ClassVar[bool] = False  # the variational models sample N(0, I)
    origin_feature_names: ClassVar[list[str]] = []

    def __init__(self, *, latent_dim: int | None = None, width: int | None = None, **options):
        super().__init__(**options)
        self.latent_dim = self.default_latent_dim if latent_dim is None else latent_dim
        self.width = self.default_width if width is None else width

    def _build_model(self, image_shape):
        return self.model_class(image_shape, self.latent_dim, self.width)

    def _model_hyperparameters(self):
        return {"latent_dim": self.latent_dim, "width": self.width}

    @torch.no_grad()
    def encode(self, images) -> np.ndarray:
        """Latents (N, latent_dim): gradient-origin latents (GON), posterior means (VGON, VAE)."""
        return np.concatenate([self.model_.encode(b).cpu().numpy() for b in self._batches(images, "images")])

    def _fit_scoring(self, train: np.ndarray) -> None:
        self.latent_gaussian_ = LatentGaussian.fit(self.encode(train))
        super()._fit_scoring(train)

    def _batch_features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.model_.encode(batch)
        features = reconstruction_features(batch, self.model_.decode(z))
        features.update(self._origin_features(batch))
        features["latent_norm"] = z.norm(dim=1)
        features["latent_distance"] = torch.from_numpy(self.latent_gaussian_.mahalanobis(z.cpu().numpy()))
        return features

    def _origin_features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """n new images decoded from random latents: from the Gaussian fitted to the training
        latents, or for the variational models from their prior N(0, I). Same seed, same images."""
        self._check_fitted()
        rng = np.random.default_rng(self.seed if seed is None else seed)
        z = (rng.standard_normal((n, self.latent_dim)) if self.sample_from_prior
             else self.latent_gaussian_.sample(n, rng))
        z = torch.from_numpy(z.astype(np.float32)).to(self._device())
        return self.model_.eval().decode(z).cpu().numpy()

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
        return self.model_.decode(z.float().to(self._device())).cpu().numpy()

    def _scoring_state(self) -> dict[str, np.ndarray]:
        return {**super()._scoring_state(), **self.latent_gaussian_.state("latent.")}

    def _feature_names(self) -> list[str]:
        return super()._feature_names() + self.origin_feature_names + ["latent_norm", "latent_distance"]

    def _load_scoring_state(self, directory: Path, scoring: dict, arrays: dict[str, np.ndarray]) -> None:
        super()._load_scoring_state(directory, scoring, arrays)
        mean, covariance = arrays.get("latent.mean"), arrays.get("latent.covariance")
        d = self.latent_dim
        if mean is None or covariance is None:
            raise GonomalyError(f"{directory / SCORING_FILE}: the GON's latent Gaussian is missing")
        if mean.shape != (d,) or covariance.shape != (d, d) or not (
                np.isfinite(mean).all() and np.isfinite(covariance).all()):
            raise GonomalyError(f"{directory / SCORING_FILE}: the latent Gaussian does not fit "
                                f"latent_dim {d}")
        try:
            self.latent_gaussian_ = LatentGaussian.from_state(arrays, "latent.")
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise GonomalyError(f"{directory / SCORING_FILE}: invalid latent Gaussian ({exc})") from None


class GONDetector(LatentDetector):
    """Convolutional GON: latent by the gradient-origin step, never F(0).

    Beyond the pixel error, a GON offers its latent and its origin image F(0): ``score="fused"``
    adds the latent's Mahalanobis distance and norm and the image's distance to F(0) to the
    fused features. A Gaussian fitted to the training latents also gives ``sample(n)``.
    """

    model_name = "gon"
    model_class = ConvGON
    origin_feature_names = ["origin_distance"]

    def _origin_features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        origin = self.model_.closed_form.image  # F(0) (F(mu(0)) for the VGON), prepared by _batches
        return {"origin_distance": (batch.flatten(1) - origin).pow(2).mean(1)}


class ImplicitGONDetector(GONDetector):
    """The implicit GON: a SIREN over pixel coordinates (latent 32 and width 256 by default, as
    in the original, and its learning rate 1e-4: at 1e-3 the sine network barely learns).
    ``reconstruct(images, size=56)`` renders the latents on another grid.
    ``fourier_features=K`` encodes the coordinates with K octaves of sines and cosines."""

    model_name = "implicit-gon"
    model_class = ImplicitGON
    default_latent_dim = 32
    default_width = 256
    default_lr = 1e-4

    def __init__(self, *, fourier_features: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.fourier_features = fourier_features

    def _build_model(self, image_shape):
        return ImplicitGON(image_shape, self.latent_dim, self.width, self.fourier_features)

    def _model_hyperparameters(self):
        return {**super()._model_hyperparameters(), "fourier_features": self.fourier_features}

    @torch.no_grad()
    def reconstruct(self, images, size: int | tuple[int, int] | None = None) -> np.ndarray:
        """Reconstructions (N, C, size, size) in [0, 1]: the latent of each image rendered on a
        size x size grid (the input's own by default)."""
        sides = (size, size) if isinstance(size, int) else size
        if size is not None and not (len(sides) == 2 and all(
                type(v) is int and 1 <= v <= MAX_SIDE for v in sides)):
            raise GonomalyError(f"size {size}: expected a side or (height, width) in 1-{MAX_SIDE}")
        return np.concatenate([self.model_.decode(self.model_.encode(b), size).numpy()
                               for b in self._batches(images, "images")])


class VariationalGONDetector(GONDetector):
    """The variational GON (see ``gonomaly.models.variational.VariationalGON``): trained with a
    reparameterised sample and a KL term, scored through the posterior mean (deterministic);
    ``sample(n)`` decodes draws from the prior N(0, I)."""

    model_name = "variational-gon"
    model_class = VariationalGON
    sample_from_prior = True


class VAEDetector(LatentDetector):
    """A conventional VAE (separate encoder and decoder) sized like the variational GON: the
    baseline the GON paper contrasts with. Scored through the posterior mean."""

    model_name = "vae"
    model_class = VAE
    default_width = 40
    sample_from_prior = True


class CAEDetector(ReconstructionDetector):
    """The seed's convolutional autoencoder, behind the same interface (``latent_dim`` and
    ``width`` shape the deeper model for square power-of-two images of 32 px or more)."""

    model_name = "cae"

    def __init__(self, *, latent_dim: int | None = None, width: int | None = None, **options):
        super().__init__(**options)
        self.latent_dim = 100 if latent_dim is None else latent_dim
        self.width = 32 if width is None else width

    def _build_model(self, image_shape):
        return CAE(image_shape, self.latent_dim, self.width)

    def _model_hyperparameters(self):
        return {"latent_dim": self.latent_dim, "width": self.width}


DETECTORS: dict[str, type[ReconstructionDetector]] = {
    "gon": GONDetector, "cae": CAEDetector, "implicit-gon": ImplicitGONDetector,
    "variational-gon": VariationalGONDetector, "vae": VAEDetector}
