"""Evaluate a fitted detector on a labelled test set and save what the report needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gonomaly.data import DataBundle
from gonomaly.io import atomic_save_npz, atomic_write_json
from gonomaly.metrics import aupro, image_metrics, pixel_auroc

METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.npz"


def slug(text: str, max_length: int = 80) -> str:
    """``text`` as a file-name part: letters, digits and ``-_.`` kept, anything else ``_``
    (``gonomaly evaluate`` writes RUN_DIR/eval-<slug of the SPEC>)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:max_length]


@dataclass
class Evaluation:
    metrics: dict
    scores: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    ids: list[str]

    def save(self, directory: str | Path) -> Path:
        """metrics.json plus per-image scores, labels, groups and ids in scores.npz."""
        directory = Path(directory)
        atomic_write_json(directory / METRICS_FILE, self.metrics)
        atomic_save_npz(directory / SCORES_FILE, scores=self.scores, labels=self.labels,
                        groups=self.groups.astype(str), ids=np.asarray(self.ids, dtype=str))
        return directory


def false_alarms(detector, metrics: dict) -> dict | None:
    """The false-alarm rate measured on the normal test images and the one the threshold's
    calibration promised (None without normal test images or a calibration)."""
    calibration = getattr(detector, "calibration_", None)
    c = metrics["confusion"]
    n_normal = c["tn"] + c["fp"]
    if calibration is None or n_normal == 0:
        return None
    return {"flagged": c["fp"], "n_normal": n_normal, "measured": c["fp"] / n_normal,
            "expected": calibration.expected_false_alarm_rate, "guaranteed": calibration.guaranteed,
            "rule": str(detector.threshold_rule_), "n_calibration": calibration.n}


def evaluate(detector, data: DataBundle, model_name: str | None = None,
             scores: np.ndarray | None = None) -> Evaluation:
    """Metrics of the detector on ``data.test``; ``scores``: its scores when already computed
    (by the ranks of a distributed evaluation)."""
    if scores is None:
        scores = detector.score_samples(data.test.images)
    metrics = {"model": model_name or detector.model_name, "dataset": data.spec,
               "source": data.source,
               **image_metrics(data.test.labels, scores, detector.threshold_, data.test.groups)}
    metrics["threshold_rule"] = str(detector.threshold_rule_)
    metrics["score"] = detector.effective("score") if hasattr(detector, "effective") else "mse"
    metrics["false_alarms"] = false_alarms(detector, metrics)
    if data.test.masks is not None:  # pixel-level: the anomaly maps against the masks
        maps = detector.anomaly_map(data.test.images)
        metrics["pixel_auroc"] = pixel_auroc(data.test.masks, maps)
        metrics["aupro"] = aupro(data.test.masks, maps)
    return Evaluation(metrics, scores, data.test.labels, data.test.groups, data.test.ids)
