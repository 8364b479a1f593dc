"""Anomaly detectors in the scikit-learn style: ``fit``, ``score_samples``, ``predict``.

A detector trains a reconstruction model on normal images only, scores an image by its
reconstruction error (mean squared error over pixels; per pixel for an anomaly map) and flags it
above ``threshold_``, which a threshold rule sets from the scores of held-out normal validation
images alone (``val_fraction``; see ``gonomaly.calibration``). The detector
is a facade: ``gonomaly.trainer`` trains, ``gonomaly.scores`` scores, ``gonomaly.saved`` and
``gonomaly.store`` write and read run folders. A model's detector names its model and defaults.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from gonomaly import distributed, saved
from gonomaly.augment import parse_augment
from gonomaly.calibration import FitData, choose_scoring, split_fit_data
from gonomaly.checkpoint import Checkpointer, refuse_checkpoint, remove_checkpoint
from gonomaly.data.arrays import as_image_array
from gonomaly.errors import GonomalyError
from gonomaly.integrity import sha256_bytes
from gonomaly.lock import RunLock
from gonomaly.models import CAE, VAE, ConvGON, ImplicitGON, VariationalGON
from gonomaly.models.implicit import TRAINING_PRECISIONS
from gonomaly.params import RUNTIME, Estimator, integer, number, one_of, optional, parsed
from gonomaly.scores import AUTO_SCORE, ERROR_MAPS, SCORING_PARAMS, score_names, scorer_class
from gonomaly.scores.features import LatentGaussian
from gonomaly.scores.graph import ScoringGraph
from gonomaly.scores.maps import error_map, gaussian_smooth
from gonomaly.store import load_run, save_run
from gonomaly.thresholds import ThresholdRule
from gonomaly.trainer import LOSSES, StepInfo, Trainer

log = logging.getLogger("gonomaly")
SCORE_BATCH_SIZE = 512
CALIBRATION_FOLDS = 5  # cross-fitting of scorings fitted on normal images (see _calibration_scores)
MAX_SIDE = saved.MAX_SIDE
SIZE = integer(1, 1 << 16)


class DetectorScoring:
    """The scoring half of a fitted detector (split from ``ReconstructionDetector`` to keep each
    class short): everything goes through ``scoring_graph``, batch by batch."""

    model_name: ClassVar[str]

    def to(self, device: str | torch.device) -> "ReconstructionDetector":
        """Score (and train again) on ``device``: cpu, cuda or auto. Returns self."""
        self._check_fitted()
        self.model_device_ = distributed.resolve_device(device)
        self.device = str(device)
        self.model_.to(self.model_device_)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise GonomalyError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    def _fit_scorer(self, normal: np.ndarray) -> None:
        self._fit_latent(normal)
        self.scorer_ = scorer_class(self.effective("score"))(
            **{**self.get_params(), **{k: self.effective(k) for k in SCORING_PARAMS}})
        self.scorer_.fit(lambda: self.features(normal), self.seed)

    def _calibration_scores(self, normal: np.ndarray) -> np.ndarray:
        """The calibration images' scores, as a new normal image would score: for a scoring
        fitted on normal images (the fused density and its latent Gaussian), each image's score
        comes from a fit on the other folds (cross-fitting), so the threshold is not fitted
        in-sample; the scoring kept is then fitted on all of them."""
        if not scorer_class(self.effective("score")).learns_from_normals:
            self._fit_scorer(normal)
            return self.score_samples(normal)
        scores = np.empty(len(normal))
        order = np.random.default_rng(self.seed).permutation(len(normal))
        try:
            for held in np.array_split(order, CALIBRATION_FOLDS):
                self._fit_scorer(np.delete(normal, held, axis=0))
                scores[held] = self.score_samples(normal[held])
        except GonomalyError as exc:  # too few images to fit a fold: in-sample, and say so
            log.warning("calibration: %s; the threshold is fitted on in-sample scores", exc)
            self._fit_scorer(normal)
            return self.score_samples(normal)
        self._fit_scorer(normal)
        return scores

    def scoring_graph(self) -> ScoringGraph:
        """The fitted scoring path as a torch module: images -> (scores, anomaly maps)."""
        self._check_fitted()
        self.model_.eval()
        if getattr(self.model_, "closed_form", False) is None:
            self.model_.prepare_closed_form()  # once after fit or load: exact and ~3x faster
        return ScoringGraph(self.model_, getattr(self, "scorer_", None), self.effective("error_map"),
                            self.effective("sigma"), self.latent_gaussian())

    def _batches(self, images, graph: ScoringGraph, what: Callable[[torch.Tensor], Any]) -> list:
        """``what`` of each scoring batch of ``images`` (checked against the model's shape)."""
        x = as_image_array(images, "images")
        if tuple(x.shape[1:]) != self.image_shape_:
            raise GonomalyError(f"images: images of shape {tuple(x.shape[1:])} (C, H, W), the "
                                f"model expects {self.image_shape_}")
        device = getattr(self, "model_device_", torch.device("cpu"))
        out = []
        with torch.no_grad(), tqdm(total=len(x), unit="img", unit_scale=True, leave=False,
                                   desc=f"score {self.model_name}", dynamic_ncols=True,
                                   disable=not self.progress or len(x) < 5000) as bar:
            for start in range(0, len(x), SCORE_BATCH_SIZE):
                out.append(what(torch.from_numpy(x[start:start + SCORE_BATCH_SIZE]).to(device)))
                bar.update(min(SCORE_BATCH_SIZE, len(x) - start))
        return out

    def reconstruct(self, images, size: int | tuple[int, int] | None = None) -> np.ndarray:
        """Reconstructions (N, C, H, W) in [0, 1]. Only the implicit GON renders at another
        ``size``; the others refuse it rather than resample."""
        self._check_fitted()
        wanted = None if size is None else tuple((size, size) if isinstance(size, int) else size)
        if wanted is not None and wanted != tuple(self.image_shape_[1:]):
            raise GonomalyError(f"{self.model_name}: renders only at its training size "
                                f"{self.image_shape_[1]}x{self.image_shape_[2]}, not {size} "
                                f"(the implicit GON renders at any size)")
        graph = self.scoring_graph()
        return np.concatenate(self._batches(images, graph, lambda b: graph.reconstruct(b)[0].cpu().numpy()))

    def anomaly_map(self, images) -> np.ndarray:
        """Per-pixel error at the input resolution, (N, H, W): the squared error averaged over
        channels (or 1 - SSIM with ``error_map="ssim"``), Gaussian-smoothed by ``sigma``."""
        graph = self.scoring_graph()
        return np.concatenate(self._batches(
            images, graph, lambda b: graph.maps(b, graph.reconstruct(b)[0])[1].cpu().numpy()))

    def features(self, images) -> dict[str, np.ndarray]:
        """Per-image scalar features that the fused score combines (see ``gonomaly.scores``)."""
        graph = self.scoring_graph()
        parts = self._batches(images, graph, lambda b: graph.features(b, *graph.reconstruct(b)))
        return {k: np.concatenate([p[k].double().cpu().numpy() for p in parts]) for k in parts[0]}

    def score_samples(self, images) -> np.ndarray:
        """Per-image anomaly score, higher is more anomalous (see ``score`` and
        ``gonomaly.scores``): the mean of the error map by default."""
        graph = self.scoring_graph()
        parts = self._batches(images, graph, lambda b: graph(b)[0].cpu().numpy())
        return np.concatenate(parts).astype(np.float64)

    def decision_function(self, images) -> np.ndarray:
        """Score minus threshold: positive means anomalous (pyod's convention)."""
        return self.score_samples(images) - self.threshold_

    def predict(self, images) -> np.ndarray:
        """1 for anomalous, 0 for normal."""
        return (self.score_samples(images) > self.threshold_).astype(np.int64)


class ReconstructionDetector(DetectorScoring, Estimator):
    """Training, scoring and thresholding through the trainer, the scorers and the store.
    Subclasses name the model (``model_name``, ``build_model``) and its ``defaults``."""

    model_name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3}  # what a hyper-parameter of None means
    has_latent: ClassVar[bool] = False  # a latent Gaussian is fitted, saved and scored

    def __init__(self, *, epochs: Annotated[int, integer(1, 10**7)] = 5,
                 batch_size: Annotated[int, integer(1, 10**7)] = 128,
                 lr: Annotated[float | None, optional(number(0, open_low=True))] = None,
                 threshold: Annotated[str, parsed(ThresholdRule.parse)] = "fpr:0.05",
                 score: Annotated[str, one_of(score_names)] = "mse",
                 seed: Annotated[int, integer(1 - 2**63, 2**63 - 1)] = 0,
                 progress: Annotated[bool, RUNTIME] = False,
                 error_map: Annotated[str, one_of(ERROR_MAPS)] = "l2",
                 sigma: Annotated[float, number(0, 64)] = 0.0,
                 top_k: Annotated[int, integer(1, 1 << 30)] = 100,
                 loss: Annotated[str, one_of(LOSSES)] = "l2",
                 augment: Annotated[str, parsed(parse_augment)] = "",
                 device: Annotated[str, RUNTIME] = "cpu",
                 precision: Annotated[str, RUNTIME, one_of(distributed.PRECISIONS)] = "fp32",
                 val_fraction: Annotated[float, number(0, 0.5)] = 0.15,
                 steps: Annotated[int | None, optional(integer(1, 10**9))] = None,
                 patience: Annotated[int | None, optional(integer(1, 10**6))] = None,
                 eval_every: Annotated[int | None, optional(integer(1, 10**9))] = None):
        self.epochs = epochs  # passes over the training images, unless ``steps`` is given
        self.steps = steps  # optimizer steps: when given, it decides the length (not epochs)
        # Held-out normal images (see gonomaly.validation): the threshold and every fitted
        # score are calibrated on them; 0 calibrates on the training images (in-sample).
        self.val_fraction = val_fraction
        self.patience = patience  # validation evaluations without improvement before stopping
        self.eval_every = eval_every  # steps between validation evaluations (None: each epoch)
        self.batch_size = batch_size
        self.lr = lr  # None: the model's default learning rate (``defaults``)
        self.threshold = threshold
        self.score = score
        self.seed = seed
        self.progress = progress
        # Pixel anomaly maps: the error per pixel (l2 or ssim), Gaussian-smoothed by sigma
        # pixels; score "max" / "topk" read the smoothed map (top_k pixels for "topk").
        self.error_map = error_map
        self.sigma = sigma
        self.top_k = top_k
        self.loss = loss  # training loss: l2, or l2+ssim (1 - SSIM per pixel added)
        self.augment = augment  # training augmentation: "" or e.g. "hflip,vflip,rot90"
        self.device = device  # where to train and score; like progress, not saved
        self.precision = precision  # fp32, or bf16 autocast for training on CUDA

    def build_model(self, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        raise NotImplementedError

    def effective(self, name: str) -> Any:
        """A hyper-parameter's value in use: as given, or the model's default for None; with
        ``score="auto"`` the fitted choice (``scoring_choice_``) for the scoring parameters."""
        choice = getattr(self, "scoring_choice_", None)
        if self.score == AUTO_SCORE and choice is not None and name in SCORING_PARAMS:
            return choice.params[name]
        value = getattr(self, name)
        return self.defaults.get(name) if value is None else value  # None: no default (steps)

    def hyperparameters(self) -> dict[str, Any]:
        """The hyper-parameters a run folder records (effective values; the threshold rule is
        recorded apart, with its fitted value)."""
        params = {name: self.effective(name) if value is None else value
                  for name, value in self.saved_params().items()}
        del params["threshold"]
        return params

    # -- training -------------------------------------------------------------------------------
    def fit(self, images, *, validation=None, checkpoint_dir: str | Path | None = None,
            checkpoint_every: int | None = None, checkpoint_minutes: float | None = None,
            resume: bool = False, checkpoint_metadata: dict[str, Any] | None = None,
            on_step: Callable[[StepInfo], bool | None] | None = None) -> "ReconstructionDetector":
        """Train on normal images, then set ``train_errors_`` and ``threshold_``.

        ``validation``: normal images to calibrate on; None holds out ``val_fraction`` of
        ``images`` (``validation_`` records which). The network never trains on them; the
        validation loss picks the best weights (and stops early after ``patience``); the
        scoring (chosen on them with ``score="auto"``) and the threshold are fitted on them.

        With ``checkpoint_dir`` (a run folder, locked for this process while training) SIGINT
        and SIGTERM stop training after the current optimizer step and write a resumable
        checkpoint to ``checkpoint_dir/resume`` before raising ``TrainingInterrupted``; so does
        an ``on_step`` callback that returns True. ``checkpoint_every`` (steps) and
        ``checkpoint_minutes`` also write one periodically. ``resume=True`` continues the
        checkpoint there: the result is bit-identical to an uninterrupted fit.
        """
        self.check_params()
        data = split_fit_data(images, validation, self.val_fraction, self.seed)
        x = torch.from_numpy(data.train)
        if checkpoint_dir is None and (resume or checkpoint_every or checkpoint_minutes):
            raise GonomalyError("resume and periodic checkpoints need a checkpoint_dir")
        world = distributed.world()
        if world.distributed and checkpoint_dir is not None:
            raise GonomalyError(f"checkpoints and resume are not supported in a distributed "
                                f"training (world size {world.size}); train without them")
        distributed.check_precision(self.precision, distributed.resolve_device(self.device))
        self.image_shape_ = tuple(int(s) for s in x.shape[1:])
        self.checkpoint_dir_ = None if checkpoint_dir is None else Path(checkpoint_dir)
        with contextlib.ExitStack() as stack:
            checkpoints = None
            if checkpoint_dir is not None:
                stack.enter_context(RunLock(checkpoint_dir))
                checkpoints = Checkpointer(checkpoint_dir, self._resume_config(data, checkpoint_metadata),
                                           checkpoint_every, checkpoint_minutes)
                if not resume:
                    refuse_checkpoint(checkpoint_dir)
            run = trainer_for(self, data).fit(lambda: self.build_model(self.image_shape_), x, checkpoints,
                                              resume, on_step)
        self.model_, self.model_device_, self.loss_history_ = run.model, run.device, run.loss_history
        self.validation_history_ = run.validation.history
        self.training_stats_ = training_stats(self, run, len(x))
        self.validation_ = data.record
        self.calibration_images_ = data.calibration  # kept in memory for fit_scoring(); not saved
        if self.score == AUTO_SCORE:
            self.scoring_choice_ = None  # the choice scores through the trained network as given
            self.scoring_choice_ = choose_scoring(self, data)
        return self.fit_scoring(data.calibration)

    def _resume_config(self, data: FitData, metadata: dict[str, Any] | None) -> dict[str, Any]:
        """What a checkpoint must have been made with to be resumed by this fit."""
        return {"model": self.model_name, "image_shape": list(self.image_shape_),
                "hyperparameters": self.hyperparameters(), "threshold": self.threshold,
                "n_train": len(data.train), "data_sha256": sha256_bytes(data.train.tobytes()),
                "validation": {k: v for k, v in data.record.items() if k != "validation_indices"},
                "metadata": metadata or {}}

    @staticmethod
    def resume(directory: str | Path, images, *, validation=None, checkpoint_every: int | None = None,
               checkpoint_minutes: float | None = None, progress: bool = False,
               on_step: Callable[[StepInfo], bool | None] | None = None,
               checkpoint_metadata: dict[str, Any] | None = None, device: str = "cpu",
               precision: str = "fp32") -> "ReconstructionDetector":
        """Continue the interrupted training in ``directory`` on the same ``images``: the
        detector's class and hyper-parameters come from the checkpoint (and so does the
        metadata kept in later checkpoints, unless ``checkpoint_metadata`` replaces it);
        ``validation``: the explicit validation images, when the training had them."""
        detector, config = saved.detector_from_checkpoint(directory, DETECTORS)
        detector.set_params(progress=progress, device=device, precision=precision)
        return detector.fit(images, validation=validation, checkpoint_dir=directory, resume=True,
                            checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
                            checkpoint_metadata=checkpoint_metadata or config.get("metadata"),
                            on_step=on_step)

    def fit_scoring(self, images=None) -> "ReconstructionDetector":
        """Fit the scoring (for the current ``score``) and the threshold on normal calibration
        images (None: those ``fit`` calibrated on, its validation images), keeping the trained
        network: compare ``mse`` and ``fused`` without training twice."""
        self._check_fitted()
        self.check_params()
        if images is None and getattr(self, "calibration_images_", None) is None:
            raise GonomalyError("fit_scoring: give the normal calibration images (a loaded "
                                "detector does not keep its validation images)")
        normal = as_image_array(self.calibration_images_ if images is None else images,
                                "calibration images")
        if self.score == AUTO_SCORE and getattr(self, "scoring_choice_", None) is None:
            raise GonomalyError("score 'auto': chosen by fit; fit_scoring needs a named score")
        self.train_errors_ = self._calibration_scores(normal)
        self.threshold_rule_ = ThresholdRule.parse(self.threshold)
        self.calibration_ = self.threshold_rule_.calibrate(self.train_errors_)
        self.threshold_ = self.calibration_.value
        return self

    def _fit_latent(self, train: np.ndarray) -> None:
        """Fit what the scoring graph needs beyond the network (the latent Gaussian)."""

    def latent_gaussian(self) -> LatentGaussian | None:
        return None

    # -- run folders --------------------------------------------------------------------------
    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write the run folder (see ``gonomaly.store``), locked against other writers; a resume
        checkpoint that ``fit`` left there is removed once the folder is complete."""
        self._check_fitted()
        directory = Path(directory)
        files, config = saved.run_files(self, metadata)
        with RunLock(directory):
            save_run(directory, files, config)
            if self.checkpoint_dir_ is not None and self.checkpoint_dir_.resolve() == directory.resolve():
                remove_checkpoint(directory)  # the training is complete
        return directory

    @staticmethod
    def load(directory: str | Path) -> "ReconstructionDetector":
        """Load any detector saved by ``save``; refuses a modified or mismatched run folder
        (every file against its sha256, every tensor against the configured model, before
        anything is allocated; nothing is ever unpickled)."""
        return load_run(directory, lambda reader: saved.restore(reader, DETECTORS))


def trainer_for(detector: ReconstructionDetector, data: FitData) -> Trainer:
    """The trainer of ``detector``'s hyper-parameters, validating on ``data.validation``."""
    validation = None if data.validation is None else torch.from_numpy(data.validation)
    return Trainer(epochs=detector.epochs, batch_size=detector.batch_size, lr=detector.effective("lr"),
                   seed=detector.seed, loss=detector.loss, augment=detector.augment, device=detector.device,
                   precision=detector.precision, progress=detector.progress, name=detector.model_name,
                   steps=detector.steps, validation=validation, eval_every=detector.eval_every,
                   patience=detector.patience)


def training_stats(detector: ReconstructionDetector, run, n_train: int) -> dict[str, Any]:
    """config.json's ``training`` object: length, speed, losses and where it ran."""
    steps, global_batch = len(run.loss_history), detector.batch_size * run.world_size
    epochs, rest = divmod(steps, -(-n_train // global_batch))
    images = epochs * n_train + min(rest * global_batch, n_train)  # an epoch's last batch may be short
    stats = {"epochs": detector.epochs, "steps": steps, "max_steps": detector.steps, "n_train": n_train,
             "seconds": round(run.seconds, 3), "images_per_s": round(images / run.seconds, 1),
             "final_loss": run.loss_history[-1], "device": str(run.device),
             "precision": detector.precision, "world_size": run.world_size,
             "global_batch_size": detector.batch_size * run.world_size}
    if run.validation.history:
        stats.update(best_step=run.validation.best_step, best_validation_loss=run.validation.best_loss,
                     stopped_early=run.validation.stopped)
    return stats


class SizedDetector(ReconstructionDetector):
    """A detector whose model class takes ``(image_shape, latent_dim, width)``."""

    model_class: ClassVar[type[torch.nn.Module]]
    defaults = {**ReconstructionDetector.defaults, "latent_dim": 100, "width": 64}

    def __init__(self, *, latent_dim: Annotated[int | None, optional(SIZE)] = None,
                 width: Annotated[int | None, optional(SIZE)] = None, **options):
        super().__init__(**options)
        self.latent_dim = latent_dim
        self.width = width

    def build_model(self, image_shape):
        return self.model_class(image_shape, self.effective("latent_dim"), self.effective("width"))


class LatentDetector(SizedDetector):
    """A detector whose model encodes every image to a latent vector (the GONs and the VAE).

    Beyond the pixel error it offers the latent: ``score="fused"`` adds the latent's
    Mahalanobis distance and norm under a Gaussian fitted to the training latents, which also
    gives ``sample(n)``; ``interpolate(a, b, steps)`` decodes a spherical interpolation.
    """

    sample_from_prior: ClassVar[bool] = False  # the variational models sample N(0, I)
    has_latent = True

    def _fit_latent(self, train: np.ndarray) -> None:
        self.latent_gaussian_ = None  # the graph encodes without it
        self.latent_gaussian_ = LatentGaussian.fit(self.encode(train))

    def latent_gaussian(self) -> LatentGaussian | None:
        return self.latent_gaussian_

    def encode(self, images) -> np.ndarray:
        """Latents (N, latent_dim): gradient-origin latents (GON), posterior means (VGON, VAE)."""
        graph = self.scoring_graph()
        return np.concatenate(self._batches(images, graph, lambda b: self.model_.encode(b).cpu().numpy()))

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """n new images decoded from random latents: from the Gaussian fitted to the training
        latents, or for the variational models from their prior N(0, I). Same seed, same images."""
        self._check_fitted()
        rng = np.random.default_rng(self.seed if seed is None else seed)
        z = (rng.standard_normal((n, self.effective("latent_dim"))) if self.sample_from_prior
             else self.latent_gaussian_.sample(n, rng))
        z = torch.from_numpy(z.astype(np.float32)).to(getattr(self, "model_device_", "cpu"))
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
        return self.model_.decode(z.float().to(getattr(self, "model_device_", "cpu"))).cpu().numpy()


class GONDetector(LatentDetector):
    """Convolutional GON: latent by the gradient-origin step, never F(0).

    Beyond the pixel error, a GON offers its latent and its origin image F(0): ``score="fused"``
    adds the latent's Mahalanobis distance and norm and the image's distance to F(0) to the
    fused features. A Gaussian fitted to the training latents also gives ``sample(n)``.
    """

    model_name = "gon"
    model_class = ConvGON


class ImplicitGONDetector(GONDetector):
    """The implicit GON: a SIREN over pixel coordinates (latent 32 and width 256 by default, as
    in the original). ``reconstruct(images, size=112)`` renders the latents on another grid.
    ``fourier_features=K`` encodes the coordinates with K octaves of sines and cosines;
    ``coordinate_fraction`` and ``training_precision`` speed training up (see
    ``gonomaly.models.implicit``).

    The defaults (lr 1e-4, 4 Fourier octaves, 1/4 of the pixels in the outer loss, bf16 hidden
    products) were chosen on validation data only: MNIST training digits, the reconstruction
    MSE of 1,000 held-out training digits after 400 steps of batch 32 over lr {1e-4, 3e-4,
    1e-3} x Fourier octaves {0, 4}. Raw coordinates stay on the ~0.10 plateau of a blurred mean
    digit, lr >= 3e-4 diverges to a saturated output; lr 1e-4 with 4 octaves reached 0.024.
    Its length is a step budget (the commands' ``IMPLICIT_DIGITS`` row: ``steps=1000,
    batch_size=32``); this class keeps every detector's ``epochs=5, batch_size=128``, which on a
    few thousand images is too few steps to leave that plateau."""

    model_name = "implicit-gon"
    defaults = {**LatentDetector.defaults, "latent_dim": 32, "width": 256, "lr": 1e-4,
                "fourier_features": 4, "coordinate_fraction": 0.25, "training_precision": "bf16"}

    def __init__(self, *, fourier_features: Annotated[int | None, optional(integer(0, 16))] = None,
                 coordinate_fraction: Annotated[float | None, optional(number(0, 1, open_low=True))] = None,
                 training_precision: Annotated[str | None, optional(one_of(TRAINING_PRECISIONS))] = None,
                 **options):
        super().__init__(**options)
        self.fourier_features = fourier_features  # 0: raw coordinates
        self.coordinate_fraction = coordinate_fraction  # of each image's pixels in the outer loss
        self.training_precision = training_precision  # of the hidden layers' products in training

    def build_model(self, image_shape):
        return ImplicitGON(image_shape, self.effective("latent_dim"), self.effective("width"),
                           self.effective("fourier_features"), self.effective("coordinate_fraction"),
                           self.effective("training_precision"))

    renders_at_any_size: ClassVar[bool] = True  # reconstruct and anomaly_map take a size

    def render_size(self, size: int | tuple[int, int]) -> tuple[int, int]:
        """(height, width) from a side or a pair, checked."""
        sides = (size, size) if isinstance(size, int) else size
        if not (isinstance(sides, (tuple, list)) and len(sides) == 2
                and all(type(v) is int and 1 <= v <= MAX_SIDE for v in sides)):
            raise GonomalyError(f"size {size}: expected a side or (height, width) in 1-{MAX_SIDE}")
        return tuple(sides)

    def reconstruct(self, images, size: int | tuple[int, int] | None = None) -> np.ndarray:
        """Reconstructions (N, C, size, size) in [0, 1]: the latent of each image rendered on a
        size x size grid (the input's own by default), e.g. ``size=112`` for 28x28 digits."""
        sides = None if size is None else self.render_size(size)
        graph = self.scoring_graph()
        return np.concatenate(self._batches(
            images, graph, lambda b: self.model_.decode(self.model_.encode(b), sides).cpu().numpy()))

    def anomaly_map(self, images, size: int | tuple[int, int] | None = None) -> np.ndarray:
        """Per-pixel error (N, H, W), on a ``size`` grid when given: the input resampled there
        (bilinear, corner pixels on the grid's corners like the coordinates) against the
        latent rendered there, smoothed by ``sigma`` scaled to the grid. The input holds no
        finer detail, so the finer map shows where the error lies, not a new measurement."""
        if size is None:
            return super().anomaly_map(images)
        sides = self.render_size(size)
        graph = self.scoring_graph()
        sigma = self.sigma * sides[0] / self.image_shape_[1]

        def fine_map(batch: torch.Tensor) -> np.ndarray:
            rendered = self.model_.decode(self.model_.encode(batch), sides)
            resampled = torch.nn.functional.interpolate(batch, size=sides, mode="bilinear",
                                                        align_corners=True)
            return gaussian_smooth(error_map(resampled, rendered, self.error_map), sigma).cpu().numpy()

        return np.concatenate(self._batches(images, graph, fine_map))


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
    defaults = {**LatentDetector.defaults, "width": 40}
    sample_from_prior = True


class CAEDetector(SizedDetector):
    """The reference notebooks' convolutional autoencoder, behind the same interface
    (``latent_dim`` and ``width`` shape the deeper model for square power-of-two images of
    32 px or more)."""

    model_name = "cae"
    model_class = CAE
    defaults = {**SizedDetector.defaults, "width": 32}


DETECTORS: dict[str, type[ReconstructionDetector]] = {
    cls.model_name: cls for cls in (GONDetector, CAEDetector, ImplicitGONDetector,
                                    VariationalGONDetector, VAEDetector)}
