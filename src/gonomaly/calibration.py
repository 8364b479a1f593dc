"""What ``fit`` does around the training: split off the validation images, and after training
choose the scoring automatically (``score="auto"``) on them.

Everything calibrated after training is fitted on the calibration images: the validation
images when there are any (held out by ``gonomaly.validation`` or given explicitly), else the
training images themselves (``val_fraction=0``: in-sample, as before the split existed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from gonomaly.data.arrays import as_image_array
from gonomaly.errors import GonomalyError
from gonomaly.integrity import sha256_bytes
from gonomaly.scores.auto import MIN_NORMALS
from gonomaly.scores.auto import choose_scoring as choose
from gonomaly.validation import ValidationSplit

log = logging.getLogger("gonomaly")


@dataclass
class FitData:
    """The images of one fit: ``train`` for the network, ``validation`` (None: none held out)
    for early stopping and calibration, and what config.json records of the split."""

    train: np.ndarray
    validation: np.ndarray | None
    record: dict[str, Any]

    @property
    def calibration(self) -> np.ndarray:
        """The images everything after training is fitted on."""
        return self.train if self.validation is None else self.validation


def split_fit_data(images, validation, fraction: float, seed: int) -> FitData:
    """``images`` and an explicit ``validation`` set, or ``images`` split by ``fraction``."""
    x = as_image_array(images, "training images")
    if validation is not None:
        val = as_image_array(validation, "validation images")
        if val.shape[1:] != x.shape[1:] or len(val) == 0:
            raise GonomalyError(f"validation images: shape {tuple(val.shape)}, expected (N >= 1) "
                                f"x {tuple(x.shape[1:])} like the training images")
        return FitData(x, val, {"source": "explicit", "n_train": len(x), "n_validation": len(val),
                                "validation_sha256": sha256_bytes(val.tobytes())})
    split = ValidationSplit.draw(len(x), fraction, seed)
    if len(split.validation) == 0:
        if fraction > 0:
            log.warning("validation: %d training images are too few to hold any out; the "
                        "threshold is fitted on the training images", len(x))
        return FitData(x, None, {"source": "none (calibrated on the training images)",
                                 "fraction": fraction, "n_train": len(x), "n_validation": 0})
    return FitData(x[split.train], x[split.validation], split.record(fraction))


def choose_scoring(detector, data: FitData):
    """The automatic choice of error map, sigma, score and k (``gonomaly.scores.auto``) for a
    trained detector, on its validation images against synthetic anomalies made from them."""
    if len(data.calibration) < MIN_NORMALS:  # too few to rank candidates: the plain error
        params = {"error_map": "l2", "sigma": 0.0, "score": "mse",
                  "top_k": int(detector.effective("top_k"))}
        log.warning("score auto: %d validation images are too few to choose a scoring (it needs %d); "
                    "using %s", len(data.calibration), MIN_NORMALS, params)
        return ChosenScoring(params, {"chosen": params, "note": f"{len(data.calibration)} validation "
                                      f"images, fewer than {MIN_NORMALS}: the plain error, no choice"})
    choice = choose(detector, data.calibration, data.train, detector.seed)
    log.info("score auto: chose %s", choice.params)
    return choice


@dataclass(frozen=True)
class ChosenScoring:
    """An automatic choice as a run folder records it: ``params`` (error map, sigma, score,
    top_k) and ``record`` (the candidates and their validation AUROC), restored at load."""

    params: dict[str, Any]
    record: Any

    def to_json(self) -> Any:
        return self.record
