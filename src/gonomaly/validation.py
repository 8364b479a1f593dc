"""The held-out validation split of the normal training images.

The network never trains on the validation images; everything calibrated after training (the
threshold, the latent Gaussian, the fused score's mixture, the automatic choice of scoring) is
fitted on them, so a false-alarm rate measured on them holds for new normal images.

Size rule: with ``fraction`` f > 0 and n images, ``max(ceil(f * n), min(20, n // 2))``
images are held out (at least 20 where half the data allows it), never all of them: at least
one image stays for training. ``fraction`` 0 holds out none (calibration in-sample, as before
the split existed). Which images: a permutation drawn from the seed alone, so the same seed
and the same number of images give the same split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_VALIDATION = 20
SPLIT_STREAM = 0x5A1D  # keeps the split's random numbers apart from every other use of the seed


def validation_size(n: int, fraction: float) -> int:
    """How many of ``n`` images the size rule above holds out."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(math.ceil(fraction * n), min(MIN_VALIDATION, n // 2)))


@dataclass(frozen=True)
class ValidationSplit:
    """Indices into the images given to ``fit`` (each sorted): training and validation."""

    train: np.ndarray
    validation: np.ndarray

    @classmethod
    def draw(cls, n: int, fraction: float, seed: int) -> "ValidationSplit":
        n_val = validation_size(n, fraction)
        rng = np.random.default_rng([seed % 2**64, SPLIT_STREAM])
        held = np.zeros(n, dtype=bool)
        held[rng.permutation(n)[:n_val]] = True
        return cls(np.flatnonzero(~held), np.flatnonzero(held))

    def record(self, fraction: float) -> dict:
        """What config.json records of the split."""
        return {"source": "held out", "fraction": fraction, "n_train": int(len(self.train)),
                "n_validation": int(len(self.validation)),
                "validation_indices": [int(i) for i in self.validation]}
