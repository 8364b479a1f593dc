"""``gonomaly train``: fit a detector on normal images and save its run folder, or resume one."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gonomaly import distributed
from gonomaly.data import load_data, parse_spec
from gonomaly.errors import GonomalyError
from gonomaly.workflow.config import DetectorConfig, make_detector, resolve_augment, resolve_defaults

log = logging.getLogger("gonomaly")


@dataclass(frozen=True)
class TrainConfig:
    """One training: the detector, the data SPEC of its normal images and the run folder.

    ``resumable``: Ctrl-C or SIGTERM writes a checkpoint to ``out/resume`` that ``resume``
    continues (and ``checkpoint_every`` steps / ``checkpoint_minutes``, when set, periodically).
    An ``mvtec`` SPEC of a root with several categories trains one model per category, in
    ``out/<category>``, unless the SPEC says ``pooled``."""

    out: Path
    data: str = "mnist"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    data_dir: Path | None = None
    image_size: int | None = None
    resumable: bool = True
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = None
    progress: bool = False


@dataclass(frozen=True)
class ResumeConfig:
    """Continue the interrupted training in ``run_dir`` with the options its checkpoint saved.

    ``expected``: options given again (``model``, ``data``, ``epochs``, ...): each must agree with
    the checkpoint. ``checkpoint_every`` / ``checkpoint_minutes`` None keep the saved ones."""

    run_dir: Path
    expected: Mapping[str, Any] = field(default_factory=dict)
    data_dir: Path | None = None
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = None
    device: str = "cpu"
    precision: str = "fp32"
    progress: bool = False


def refuse_under_torchrun(checkpoints_requested: bool) -> None:
    world = distributed.env_world()
    if world.distributed and checkpoints_requested:
        raise GonomalyError(f"--resume, --checkpoint-every and --checkpoint-minutes are not supported "
                            f"under torchrun (world size {world.size}); train in one process to use them")


def train(config: TrainConfig) -> list[Path]:
    """Train and save each run folder; returns them. Under torchrun every rank trains (DDP:
    ``batch_size`` is per process) and rank 0 alone writes; checkpoints are single-process only."""
    refuse_under_torchrun(bool(config.checkpoint_every or config.checkpoint_minutes))
    with distributed.session(config.detector.device):
        spec = parse_spec(config.data)
        if spec.kind == "mvtec" and "pooled" not in spec.options:
            from gonomaly.data.mvtec import category_folders

            folders = category_folders(spec.options["root"])
            if len(folders) > 1:  # one model per category, in OUT/<category>
                runs = [replace(config, data=f"mvtec:{folder}", out=config.out / folder.name)
                        for folder in folders]
                for run in runs:
                    train_run(run)
                return [run.out for run in runs]
        train_run(config)
        return [config.out]


def train_run(config: TrainConfig):
    """Train and save one run folder, which stays locked against other writers meanwhile; returns
    the fitted detector and the data bundle. Runs inside ``distributed.session``."""
    from gonomaly.checkpoint import refuse_checkpoint
    from gonomaly.lock import RunLock
    from gonomaly.thresholds import ThresholdRule

    spec = parse_spec(config.data)
    settings = resolve_defaults(config.detector, spec.kind)
    ThresholdRule.parse(settings.threshold)  # fail before loading data, not after training
    world = distributed.world()
    with RunLock(config.out) if world.main else contextlib.nullcontext():
        fit_options = {}
        if config.resumable and not world.distributed:
            refuse_checkpoint(config.out)
            data_dir = config.data_dir and str(Path(config.data_dir).resolve())
            fit_options = dict(
                checkpoint_dir=config.out, checkpoint_every=config.checkpoint_every,
                checkpoint_minutes=config.checkpoint_minutes,
                checkpoint_metadata={"data": {"spec": config.data, "data_dir": data_dir},
                                     "checkpoint": {"every": config.checkpoint_every,
                                                    "minutes": config.checkpoint_minutes}})
        bundle = load_data(spec, config.data_dir, seed=settings.seed, image_size=config.image_size)
        log.info("training %s on %d images of %s", settings.model, len(bundle.train), config.data)
        augment = resolve_augment(settings.augment, bundle)
        detector = make_detector(replace(settings, augment=augment), progress=config.progress)
        detector.fit(bundle.train, validation=bundle.val, **fit_options)
        if world.main:
            save_run(detector, config.out, config.data, bundle)
    return detector, bundle


def save_run(detector, out: Path, data: str, bundle) -> None:
    detector.save(out, metadata={"data": {"spec": data, "source": bundle.source,
                                          **bundle.description}})
    stats = detector.training_stats_
    log.info("trained %d steps in %.1f s (%.0f images/s); threshold %s = %.6g on %d validation "
             "images (expected false-alarm rate %.3g); saved to %s", stats["steps"], stats["seconds"],
             stats["images_per_s"], detector.threshold_rule_, detector.threshold_,
             detector.calibration_.n, detector.calibration_.expected_false_alarm_rate, out)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _saved_options(run_dir: Path, config: dict) -> dict:
    """The options the checkpoint was trained with, as ``gonomaly train`` names them."""
    from gonomaly.checkpoint import RESUME_DIR

    spec = _dict(_dict(config.get("metadata")).get("data")).get("spec")
    if not isinstance(spec, str):
        raise GonomalyError(f"{run_dir / RESUME_DIR}: the checkpoint names no data spec (not made "
                            f"by `gonomaly train`; use ReconstructionDetector.resume)")
    return {"model": config.get("model"), "data": spec, "threshold": config.get("threshold"),
            **(config.get("hyperparameters") or {})}


def _check_expected(run_dir: Path, saved: dict, expected: Mapping[str, Any]) -> None:
    from gonomaly.checkpoint import RESUME_DIR

    for name, value in expected.items():
        if saved.get(name) != value:
            flag = "--" + name.replace("_", "-")
            raise GonomalyError(
                f"{flag} {value}: conflicts with the checkpoint in {run_dir / RESUME_DIR} "
                f"({flag} {saved.get(name, 'not set')}); leave it out to resume")


def resume(config: ResumeConfig):
    """Continue the training checkpointed in ``config.run_dir`` exactly and save the run folder;
    returns the fitted detector. Not under torchrun."""
    from gonomaly.checkpoint import load_checkpoint
    from gonomaly.detector import ReconstructionDetector
    from gonomaly.lock import RunLock

    refuse_under_torchrun(True)
    run_dir = config.run_dir
    with distributed.session(config.device), RunLock(run_dir):
        state = load_checkpoint(run_dir)
        saved = _saved_options(run_dir, state.config)
        _check_expected(run_dir, saved, config.expected)
        metadata = _dict(state.config.get("metadata"))
        saved_checkpoints = _dict(metadata.get("checkpoint"))
        checkpoints = {"every": config.checkpoint_every, "minutes": config.checkpoint_minutes}
        checkpoints = {key: saved_checkpoints.get(key) if value is None else value
                       for key, value in checkpoints.items()}
        data_dir = config.data_dir or (metadata.get("data") or {}).get("data_dir")
        shape = state.config.get("image_shape")
        bundle = load_data(saved["data"], data_dir, seed=saved.get("seed", 0),
                           image_size=shape[1] if isinstance(shape, list) and len(shape) == 3 else None)
        p = state.progress
        log.info("resuming %s on %d images of %s at epoch %d, step %d (%d steps done)",
                 saved["model"], len(bundle.train), saved["data"], p.epoch + 1, p.step, p.global_step)
        detector = ReconstructionDetector.resume(
            run_dir, bundle.train, validation=bundle.val, checkpoint_every=checkpoints["every"],
            checkpoint_minutes=checkpoints["minutes"], progress=config.progress,
            checkpoint_metadata={**metadata, "checkpoint": checkpoints}, device=config.device,
            precision=config.precision)
        save_run(detector, run_dir, saved["data"], bundle)
    return detector

