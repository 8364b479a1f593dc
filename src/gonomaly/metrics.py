"""Image-level metrics for a labelled test set (label 1 = anomalous)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from gonomaly.data.specs import NORMAL_GROUP


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def image_metrics(labels, scores, threshold: float, groups=None) -> dict:
    """Confusion matrix at the threshold, accuracy, precision, recall, F1, AUROC, AUPR, and a
    per-group table (each anomaly group's AUROC is measured against the normal images)."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = (scores > threshold).astype(np.int64)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    tn = int(((predicted == 0) & (labels == 0)).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else None)
    result = {
        "n_normal": int((labels == 0).sum()), "n_anomalous": int((labels == 1).sum()),
        "threshold": float(threshold),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "accuracy": _ratio(tp + tn, len(labels)), "precision": precision, "recall": recall, "f1": f1,
        "image_auroc": _auroc(labels, scores),
        "image_aupr": (float(average_precision_score(labels, scores))
                       if len(np.unique(labels)) == 2 else None),
        "groups": {},
    }
    if groups is not None:
        groups = np.asarray(groups, dtype=object)
        normal = groups == NORMAL_GROUP
        names = ([NORMAL_GROUP] if normal.any() else []) + sorted(set(groups[~normal]),
                                                                   key=list(groups).index)
        for name in names:
            member = groups == name
            entry = {"n": int(member.sum()), "flagged": int(predicted[member].sum())}
            if name == NORMAL_GROUP:
                entry["auroc"] = None
            else:
                pair = member | normal
                entry["auroc"] = _auroc(labels[pair], scores[pair])
            result["groups"][name] = entry
    return result


def format_table(metrics: dict) -> str:
    """A plain-text table of the per-group results and the pooled figures."""

    def fmt(value) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

    lines = [f"{'group':<16}{'n':>7}{'flagged':>9}{'rate':>8}{'AUROC':>9}"]
    for name, entry in metrics["groups"].items():
        rate = entry["flagged"] / entry["n"] if entry["n"] else float("nan")
        lines.append(f"{name:<16}{entry['n']:>7}{entry['flagged']:>9}{rate:>8.3f}{fmt(entry['auroc']):>9}")
    c = metrics["confusion"]
    lines += [
        "",
        f"threshold {metrics['threshold']:.6g}   tn {c['tn']}  fp {c['fp']}  fn {c['fn']}  tp {c['tp']}",
        f"accuracy {fmt(metrics['accuracy'])}  precision {fmt(metrics['precision'])}  "
        f"recall {fmt(metrics['recall'])}  f1 {fmt(metrics['f1'])}",
        f"image AUROC {fmt(metrics['image_auroc'])}  image AUPR {fmt(metrics['image_aupr'])}",
    ]
    return "\n".join(lines)
