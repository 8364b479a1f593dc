"""The score interface and its registry: one ``Scorer`` subclass per score, registered by name.

A scorer turns a batch's anomaly maps (and, when it asks for them, per-image features) into
one score per image; ``fit`` sees the normal training images only. It is a torch module, so the
ONNX export runs the very code that scoring runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from gonomaly.errors import GonomalyError

SCORERS: dict[str, type["Scorer"]] = {}
AUTO_SCORE = "auto"  # choose error map, sigma, score and k on the validation set (scores.auto)
SCORING_PARAMS = ("error_map", "sigma", "score", "top_k")  # what the automatic choice sets


def score_names() -> tuple[str, ...]:
    """Every value of the ``score`` hyper-parameter: the registered scores and ``auto``."""
    return (*SCORERS, AUTO_SCORE)


@dataclass
class ScoreInputs:
    """What a scorer sees for a batch of B images."""

    raw_map: torch.Tensor       # (B, H, W): the error map
    smoothed_map: torch.Tensor  # (B, H, W): the same, Gaussian-smoothed by ``sigma``
    features: dict[str, torch.Tensor] | None  # per-image features, when ``needs_features``


class Scorer(nn.Module):
    """One image score. ``params`` are the detector's hyper-parameters (a scorer takes the ones
    it needs, e.g. ``top_k``)."""

    name: ClassVar[str]
    needs_features: ClassVar[bool] = False
    reads_smoothed_map: ClassVar[bool] = False  # on the scale of the (smoothed) pixel map
    # fitted on normal images (a density): an image it was fitted on scores too well, so the
    # threshold is calibrated on scores from fits that left each calibration image out
    learns_from_normals: ClassVar[bool] = False

    def __init__(self, **params: Any):
        super().__init__()

    def fit(self, features: Callable[[], dict[str, np.ndarray]], seed: int) -> "Scorer":
        """Fit on the normal training images (``features()`` computes theirs); most scores
        have nothing to fit."""
        return self

    def forward(self, inputs: ScoreInputs) -> torch.Tensor:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """Fitted arrays, saved in ``scoring.safetensors``."""
        return {}

    def config(self) -> dict[str, Any]:
        """Fitted values saved in config.json's ``scoring`` object."""
        return {}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], config: dict[str, Any],
                   feature_names: list[str], **params: Any) -> "Scorer":
        """The scorer that ``state`` and ``config`` describe; raises ValueError, KeyError or
        TypeError for anything that does not fit (``feature_names``: those the detector has)."""
        return cls(**params)


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: make a score available by its ``name``."""
    SCORERS[cls.name] = cls
    return cls


def scorer_class(name: str) -> type[Scorer]:
    if name not in SCORERS:
        raise GonomalyError(f"score '{name}': unknown (use {', '.join(SCORERS)})")
    return SCORERS[name]
