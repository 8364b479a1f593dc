"""Threshold rules, fitted on the scores of normal calibration images alone (no labels needed).

The calibration images are the held-out validation images when ``fit`` holds some out (see
``gonomaly.validation``), else the training images themselves (in-sample, optimistic).

``fpr:A`` is split-conformal: with n calibration scores, the threshold is the k-th smallest,
k = ceil((n + 1)(1 - A)). A new normal image exchangeable with the calibration images then
scores above it with probability (n + 1 - k) / (n + 1) <= A. When k > n (fewer than 1/A - 1
images) no calibration score achieves A: the rule takes the largest score, whose guarantee is
1 / (n + 1), and says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from gonomaly.errors import GonomalyError

log = logging.getLogger("gonomaly")
RULES = ("fpr", "mean-std", "quantile", "value")
DEFAULT_PARAMETERS = {"fpr": "0.05", "mean-std": "2", "quantile": "0.99"}


@dataclass(frozen=True)
class Calibration:
    """A fitted threshold and the false-alarm rate it promises on new normal images:
    ``bound`` for ``fpr:A`` (guaranteed, up to exchangeability), else the fraction of the
    calibration scores above the threshold (an estimate). ``note`` says when A was not achievable."""

    value: float
    expected_false_alarm_rate: float
    guaranteed: bool
    n: int
    note: str = ""

    def record(self) -> dict:
        """The calibration as config.json's ``threshold.calibration`` object."""
        out = {"n": self.n, "expected_false_alarm_rate": self.expected_false_alarm_rate,
               "guaranteed": self.guaranteed}
        return {**out, "note": self.note} if self.note else out


def conformal_rank(n: int, alpha: float) -> int:
    """The 1-based rank k = ceil((n + 1)(1 - alpha)) of the split-conformal threshold (may
    exceed n). The tolerance keeps a product such as 20 x 0.95 from rounding up past 19."""
    return math.ceil((n + 1) * (1 - alpha) - 1e-9)


@dataclass(frozen=True)
class ThresholdRule:
    """``fpr:A`` (split-conformal, the default with A = 0.05), ``mean-std:K`` (mean + K * std,
    the reference notebooks' rule with K = 2), ``quantile:Q`` or ``value:X``."""

    kind: str
    parameter: float

    @classmethod
    def parse(cls, text: str) -> "ThresholdRule":
        kind, _, value = text.partition(":")
        if kind not in RULES:
            raise GonomalyError(
                f"threshold '{text}': unknown rule (use fpr:A, mean-std:K, quantile:Q or value:X)")
        try:
            parameter = float(value or DEFAULT_PARAMETERS.get(kind, ""))
        except ValueError:
            raise GonomalyError(f"threshold '{text}': '{value}' is not a number") from None
        if kind in ("quantile", "fpr") and not 0.0 < parameter < 1.0:
            raise GonomalyError(f"threshold '{text}': {'a quantile' if kind == 'quantile' else 'a false-alarm rate'}"
                                f" must lie strictly between 0 and 1")
        if not np.isfinite(parameter):
            raise GonomalyError(f"threshold '{text}': the value must be finite")
        return cls(kind, parameter)

    def __str__(self) -> str:
        return f"{self.kind}:{self.parameter:g}"

    def fit(self, calibration_scores: np.ndarray) -> float:
        return self.calibrate(calibration_scores).value

    def calibrate(self, calibration_scores: np.ndarray) -> Calibration:
        """The threshold on these normal scores and the false-alarm rate it promises."""
        scores = np.asarray(calibration_scores, dtype=np.float64)
        n = int(scores.size)
        if self.kind == "fpr":
            return self._conformal(np.sort(scores), n)
        if self.kind == "value":
            value = self.parameter
        elif self.kind == "quantile":
            value = float(np.quantile(scores, self.parameter))
        else:
            value = float(scores.mean() + self.parameter * scores.std())
        return Calibration(value, float((scores > value).mean()), False, n)

    def _conformal(self, ordered: np.ndarray, n: int) -> Calibration:
        k = conformal_rank(n, self.parameter)
        note = ""
        if k > n:
            note = (f"{n} calibration images are too few for fpr:{self.parameter:g} (it needs at least "
                    f"{math.ceil(1 / self.parameter - 1)}); the threshold is the largest calibration "
                    f"score, guaranteeing a false-alarm rate of at most 1/(n+1) = {1 / (n + 1):.3g}")
            log.warning("threshold: %s", note)
            k = n
        return Calibration(float(ordered[k - 1]), (n + 1 - k) / (n + 1), True, n, note)

    @staticmethod
    def statistics(calibration_scores: np.ndarray) -> dict[str, float]:
        errors = np.asarray(calibration_scores, dtype=np.float64)
        return {"n": int(errors.size), "mean": float(errors.mean()), "std": float(errors.std()),
                "min": float(errors.min()), "max": float(errors.max()),
                "q50": float(np.quantile(errors, 0.5)), "q99": float(np.quantile(errors, 0.99))}
