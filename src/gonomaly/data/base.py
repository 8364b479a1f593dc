"""The types every dataset produces: a labelled test set, a bundle of training and test images,
and a parsed SPEC. The bottom of the data package: it imports nothing from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gonomaly.errors import GonomalyError

NORMAL_GROUP = "normal"
PARTIAL_LABEL = -1  # an uncertain anomaly (ELPV's 1/3, 2/3 cells): reported per group, never pooled


@dataclass
class ImageSet:
    """Labelled test images: float32 (N, C, H, W) in [0, 1]; label 1 = anomalous; optional
    ground-truth masks (N, H, W) uint8, 1 = anomalous pixel."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    ids: list[str]
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class DataBundle:
    """Normal training images and a labelled test set from one SPEC; ``val``: normal
    validation images when the SPEC names them (else ``fit`` holds some training images out)."""

    spec: str
    train: np.ndarray
    test: ImageSet
    source: str
    description: dict = field(default_factory=dict)
    val: np.ndarray | None = None


@dataclass(frozen=True)
class DataSpec:
    """A parsed SPEC string: its kind, its options as written, and the text itself."""

    kind: str
    options: dict[str, str]
    text: str

    def error(self, problem: str) -> GonomalyError:
        """The one-line error for a problem with this SPEC."""
        return GonomalyError(f"data spec '{self.text}': {problem}")

    def int_option(self, key: str, default: int | None) -> int | None:
        """A positive integer option, or ``default`` when the SPEC does not give it."""
        if key not in self.options:
            return default
        try:
            value = int(self.options[key])
        except ValueError:
            raise self.error(f"{key} must be an integer") from None
        if value < 1:
            raise self.error(f"{key} must be positive")
        return value
