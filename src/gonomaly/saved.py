"""A fitted detector as run-folder files, and back: what ``save`` writes and ``load`` checks.

config.json holds the format, the model's name, the image shape, the hyper-parameters (as
``get_params`` gives them, checked by the detector's own ``check_params`` at load), the threshold
(rule, value, statistics of the calibration scores, the false-alarm rate it promises), the
validation split, training statistics, the score's fitted values (and, for ``score="auto"``,
the candidates and the choice) and every other file's sha256. Every value read back is type-
and range-checked.
"""

from __future__ import annotations

import contextlib
import io
import math
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy
from safetensors.torch import save as save_torch

from gonomaly import __version__
from gonomaly.calibration import ChosenScoring
from gonomaly.checkpoint import PROGRESS_FILE, RESUME_DIR, load_checkpoint
from gonomaly.errors import GonomalyError
from gonomaly.integrity import (
    check_tensors,
    load_safetensors,
    parse_json,
    read_float_vector,
    safetensors_header,
    sha256_bytes,
)
from gonomaly.io import json_bytes
from gonomaly.params import Check, declared
from gonomaly.scores import AUTO_SCORE, SCORERS, SCORING_PARAMS, scorer_class
from gonomaly.scores.features import LatentGaussian
from gonomaly.scores.graph import feature_names
from gonomaly.store import (
    CHECKPOINT_FORMAT,
    HISTORY_FILE,
    SCORING_FILE,
    TRAIN_ERRORS_FILE,
    WEIGHTS_FILE,
    RunReader,
)
from gonomaly.thresholds import Calibration, ThresholdRule

MAX_SIDE = 16384
LATENT_PREFIX = "latent."


def run_files(detector, metadata: dict[str, Any] | None) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The files of a fitted detector's run folder and its configuration (with their sha256)."""
    state = {k: v.detach().cpu().contiguous() for k, v in detector.model_.state_dict().items()}
    files = {WEIGHTS_FILE: save_torch(state),
             HISTORY_FILE: json_bytes({"loss": detector.loss_history_,
                                       "validation": getattr(detector, "validation_history_", [])})}
    buffer = io.BytesIO()
    np.save(buffer, detector.train_errors_, allow_pickle=False)
    files[TRAIN_ERRORS_FILE] = buffer.getvalue()
    latent = detector.latent_gaussian()
    arrays = {**detector.scorer_.state(), **(latent.state(LATENT_PREFIX) if latent is not None else {})}
    scoring = {"score": detector.effective("score")}
    choice = getattr(detector, "scoring_choice_", None)
    if detector.score == AUTO_SCORE and choice is not None:
        scoring.update(chosen=dict(choice.params), auto=choice.to_json())
    if arrays:
        files[SCORING_FILE] = save_numpy(arrays)
        scoring["sha256"] = sha256_bytes(files[SCORING_FILE])
    scoring.update(detector.scorer_.config())
    config = {
        "format": CHECKPOINT_FORMAT,
        "model": detector.model_name,
        "image_shape": list(detector.image_shape_),
        "hyperparameters": detector.hyperparameters(),
        "threshold": {"rule": str(detector.threshold_rule_), "value": detector.threshold_,
                      "train_errors": ThresholdRule.statistics(detector.train_errors_),
                      "calibration": calibration(detector).record()},
        "validation": getattr(detector, "validation_", {}),
        "training": detector.training_stats_,
        "scoring": scoring,
        "weights_sha256": sha256_bytes(files[WEIGHTS_FILE]),
        "history_sha256": sha256_bytes(files[HISTORY_FILE]),
        "train_errors_sha256": sha256_bytes(files[TRAIN_ERRORS_FILE]),
        "versions": {"gonomaly": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        **(metadata or {}),
    }
    return files, config


def calibration(detector) -> Calibration:
    """The fitted threshold's calibration (recomputed from the calibration scores for a run
    folder saved before it was recorded)."""
    found = getattr(detector, "calibration_", None)
    if found is None:
        found = replace(detector.threshold_rule_.calibrate(detector.train_errors_), value=detector.threshold_)
    return found


def read_calibration(detector, record: Any) -> Calibration:
    if not (isinstance(record, dict) and type(record.get("n")) is int
            and type(record.get("expected_false_alarm_rate")) in (int, float)
            and type(record.get("guaranteed")) is bool and isinstance(record.get("note", ""), str)):
        detector.calibration_ = None
        return calibration(detector)
    return Calibration(detector.threshold_, float(record["expected_false_alarm_rate"]),
                       record["guaranteed"], record["n"], record.get("note", ""))


def read_choice(detector, scoring: dict[str, Any], path: Path) -> ChosenScoring | None:
    """The automatic scoring choice of a ``score="auto"`` run folder, each value checked."""
    if detector.score != AUTO_SCORE:
        return None
    chosen = scoring.get("chosen")
    if not (isinstance(chosen, dict) and set(chosen) == set(SCORING_PARAMS)
            and chosen.get("score") in SCORERS):
        raise GonomalyError(f"{path}: invalid configuration (scoring.chosen)")
    for name in SCORING_PARAMS:
        for check in declared(type(detector))[name][1]:
            if isinstance(check, Check):
                try:
                    check(name, chosen[name])
                except GonomalyError as exc:
                    raise GonomalyError(f"{path}: invalid configuration (scoring.chosen: {exc})") from None
    return ChosenScoring(dict(chosen), scoring.get("auto"))


def detector_from_config(config: dict[str, Any], path: Path, detectors: dict[str, type],
                         threshold: Any = None):
    """An unfitted detector from a saved configuration, every hyper-parameter checked."""
    name = config.get("model")
    cls = detectors.get(name) if isinstance(name, str) else None
    if cls is None:
        raise GonomalyError(f"{path}: unknown model '{str(name)[:80]}'")
    params = config.get("hyperparameters")
    if not isinstance(params, dict):
        raise GonomalyError(f"{path}: invalid configuration (hyperparameters is not an object)")
    rule = threshold if threshold is not None else "mean-std:2"  # the rule before fpr:A became the default
    if not isinstance(rule, str):
        raise GonomalyError(f"{path}: invalid configuration (threshold rule is not a string)")
    detector = cls()
    saved = detector.hyperparameters()
    for key, value in params.items():
        if key not in saved:
            raise GonomalyError(f"{path}: invalid configuration (hyperparameter {str(key)[:40]} = "
                                f"{str(value)[:40]!s})")
    detector.set_params(**params)
    try:
        detector.check_params()
        detector.set_params(threshold=rule).check_params()
    except GonomalyError as exc:
        raise GonomalyError(f"{path}: invalid configuration (hyperparameter {exc})") from None
    return detector


def detector_from_checkpoint(directory: str | Path, detectors: dict[str, type]):
    """The detector an interrupted training in ``directory`` was started as, and the
    checkpoint's configuration."""
    config = load_checkpoint(directory).config
    path = Path(directory) / RESUME_DIR / PROGRESS_FILE
    return detector_from_config(config, path, detectors, config.get("threshold")), config


def image_shape(config: dict[str, Any], path: Path) -> tuple[int, int, int]:
    shape = config.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(s) is int for s in shape)
            and shape[0] in (1, 3) and all(1 <= s <= MAX_SIDE for s in shape[1:])):
        raise GonomalyError(f"{path}: invalid configuration (image_shape {str(shape)[:60]})")
    return tuple(shape)


def build(detector, shape, path: Path, device=None) -> torch.nn.Module:
    try:
        with torch.device(device) if device else contextlib.nullcontext():
            return detector.build_model(shape)
    except (ValueError, RuntimeError) as exc:
        raise GonomalyError(f"{path}: the configured model cannot be built ({exc})") from None


def restore(reader: RunReader, detectors: dict[str, type]):
    """The fitted detector that a run folder's verified files describe."""
    config, config_path = reader.config, reader.config_path
    threshold = config.get("threshold")
    if not (isinstance(threshold, dict) and isinstance(threshold.get("rule"), str)
            and type(threshold.get("value")) in (int, float) and math.isfinite(threshold["value"])):
        raise reader.invalid("threshold")
    detector = detector_from_config(config, config_path, detectors, threshold["rule"])
    shape = image_shape(config, config_path)
    scoring = config.get("scoring", {})
    if not isinstance(scoring, dict) or "weights_sha256" not in config:
        raise reader.invalid("scoring or weights_sha256")
    weights = reader.folder / WEIGHTS_FILE
    data = reader.verified(WEIGHTS_FILE, config["weights_sha256"], "weights file")
    skeleton = build(detector, shape, config_path, device="meta")  # shapes, no memory
    check_tensors(safetensors_header(data, weights), skeleton.state_dict(), weights,
                  "the configured model")
    state = load_safetensors(data, weights)
    detector.image_shape_ = shape
    detector.model_ = build(detector, shape, config_path)
    detector.model_.load_state_dict(state)
    detector.model_.eval()
    detector.checkpoint_dir_ = None
    detector.train_errors_ = read_float_vector(
        reader.verified(TRAIN_ERRORS_FILE, config.get("train_errors_sha256"), "training errors"),
        reader.folder / TRAIN_ERRORS_FILE, "training errors")
    detector.scoring_choice_ = read_choice(detector, scoring, config_path)
    restore_scoring(detector, reader, scoring)
    detector.threshold_rule_ = ThresholdRule.parse(threshold["rule"])
    detector.threshold_ = float(threshold["value"])
    detector.calibration_ = read_calibration(detector, threshold.get("calibration"))
    validation = config.get("validation", {})
    detector.validation_ = validation if isinstance(validation, dict) else {}
    training = config.get("training", {})
    detector.training_stats_ = training if isinstance(training, dict) else {}
    detector.loss_history_, detector.validation_history_ = read_history(reader)
    return detector


def read_history(reader: RunReader) -> tuple[list[float], list[list[float]]]:
    """The training loss per step and the validation losses ([step, loss] pairs)."""
    history = reader.folder / HISTORY_FILE
    if "history_sha256" not in reader.config and not history.is_file():
        return [], []
    doc = parse_json(reader.verified(HISTORY_FILE, reader.config.get("history_sha256"), "loss history"),
                     history)
    loss = doc.get("loss") if isinstance(doc, dict) else None
    validation = doc.get("validation", []) if isinstance(doc, dict) else None
    if not (isinstance(loss, list) and all(type(v) in (int, float) for v in loss)
            and isinstance(validation, list)
            and all(isinstance(e, list) and len(e) == 2 and all(type(v) in (int, float) for v in e)
                    for e in validation)):
        raise GonomalyError(f"{history}: invalid loss history")
    return [float(v) for v in loss], [[v for v in e] for e in validation]


def restore_scoring(detector, reader: RunReader, scoring: dict[str, Any]) -> None:
    """The latent Gaussian (latent detectors) and the score's fitted state."""
    path = reader.folder / SCORING_FILE
    arrays = {}
    if "sha256" in scoring:
        blob = reader.verified(SCORING_FILE, scoring["sha256"], "scoring state")
        safetensors_header(blob, path)
        try:
            arrays = load_numpy(blob)
        except (SafetensorError, ValueError, TypeError) as exc:
            raise GonomalyError(f"{path}: cannot read safetensors ({exc})") from None
    if detector.has_latent:
        try:
            detector.latent_gaussian_ = LatentGaussian.from_state(
                arrays, LATENT_PREFIX, detector.effective("latent_dim"))
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise GonomalyError(f"{path}: invalid latent Gaussian ({exc})") from None
    score = detector.effective("score")
    cls = scorer_class(score)
    try:
        detector.scorer_ = cls.from_state(arrays, scoring, feature_names(
            detector.model_, detector.latent_gaussian()),
            **{**detector.get_params(), **{k: detector.effective(k) for k in SCORING_PARAMS}})
    except (KeyError, ValueError, TypeError, np.linalg.LinAlgError) as exc:
        raise GonomalyError(f"{path}: invalid {score}-score state ({exc})") from None
