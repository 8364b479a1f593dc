"""Threshold rules, fitted on training errors alone (no labels needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gonomaly.errors import GonomalyError


@dataclass(frozen=True)
class ThresholdRule:
    """``mean-std:K`` (mean + K * std, the reference notebooks' rule with K = 2), ``quantile:Q`` or ``value:X``."""

    kind: str
    parameter: float

    @classmethod
    def parse(cls, text: str) -> "ThresholdRule":
        kind, _, value = text.partition(":")
        defaults = {"mean-std": "2", "quantile": "0.99"}
        if kind not in ("mean-std", "quantile", "value"):
            raise GonomalyError(
                f"threshold '{text}': unknown rule (use mean-std:K, quantile:Q or value:X)"
            )
        try:
            parameter = float(value or defaults.get(kind, ""))
        except ValueError:
            raise GonomalyError(f"threshold '{text}': '{value}' is not a number") from None
        if kind == "quantile" and not 0.0 < parameter < 1.0:
            raise GonomalyError(f"threshold '{text}': a quantile must lie strictly between 0 and 1")
        if not np.isfinite(parameter):
            raise GonomalyError(f"threshold '{text}': the value must be finite")
        return cls(kind, parameter)

    def __str__(self) -> str:
        return f"{self.kind}:{self.parameter:g}"

    def fit(self, train_errors: np.ndarray) -> float:
        errors = np.asarray(train_errors, dtype=np.float64)
        if self.kind == "value":
            return self.parameter
        if self.kind == "quantile":
            return float(np.quantile(errors, self.parameter))
        return float(errors.mean() + self.parameter * errors.std())

    @staticmethod
    def statistics(train_errors: np.ndarray) -> dict[str, float]:
        errors = np.asarray(train_errors, dtype=np.float64)
        return {"n": int(errors.size), "mean": float(errors.mean()), "std": float(errors.std()),
                "min": float(errors.min()), "max": float(errors.max()),
                "q50": float(np.quantile(errors, 0.5)), "q99": float(np.quantile(errors, 0.99))}
