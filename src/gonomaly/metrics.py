"""Image-level metrics for a labelled test set (label 1 = anomalous)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from gonomaly.data.base import NORMAL_GROUP, PARTIAL_LABEL


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def image_metrics(labels, scores, threshold: float, groups=None) -> dict:
    """Confusion matrix at the threshold, accuracy, precision, recall, F1, AUROC, AUPR, and a
    per-group table (each anomaly group's AUROC is measured against the normal images, the group
    being the positive class). Images labelled ``PARTIAL_LABEL`` (-1: an uncertain defect, e.g.
    ELPV's probability 1/3 and 2/3 cells) are left out of every pooled figure and reported only in
    their group's row."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = (scores > threshold).astype(np.int64)
    known = labels != PARTIAL_LABEL
    tp = int(((predicted == 1) & (labels == 1)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    tn = int(((predicted == 0) & (labels == 0)).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else None)
    pooled_labels, pooled_scores = labels[known], scores[known]
    result = {
        "n_normal": int((labels == 0).sum()), "n_anomalous": int((labels == 1).sum()),
        "threshold": float(threshold),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "accuracy": _ratio(tp + tn, int(known.sum())), "precision": precision, "recall": recall, "f1": f1,
        "image_auroc": _auroc(pooled_labels, pooled_scores),
        "image_aupr": (float(average_precision_score(pooled_labels, pooled_scores))
                       if len(np.unique(pooled_labels)) == 2 else None),
        "groups": {},
    }
    if not known.all():
        result["n_partial"] = int((~known).sum())
    if groups is not None:
        result["groups"] = group_metrics(labels, scores, predicted, np.asarray(groups, dtype=object))
    return result


def group_metrics(labels: np.ndarray, scores: np.ndarray, predicted: np.ndarray, groups: np.ndarray) -> dict:
    """Per group: its size, how many were flagged, and (for a group other than the normal one)
    its AUROC against the normal images, positive = any image with a nonzero label."""
    normal = groups == NORMAL_GROUP
    names = ([NORMAL_GROUP] if normal.any() else []) + sorted(set(groups[~normal]), key=list(groups).index)
    table = {}
    for name in names:
        member = groups == name
        entry = {"n": int(member.sum()), "flagged": int(predicted[member].sum())}
        if name == NORMAL_GROUP:
            entry["auroc"] = None
        else:
            pair = member | normal
            entry["auroc"] = _auroc((labels[pair] != 0).astype(np.int64), scores[pair])
        table[name] = entry
    return table


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
    if "pixel_auroc" in metrics:
        lines.append(f"pixel AUROC {fmt(metrics['pixel_auroc'])}  AUPRO (FPR <= 0.3) {fmt(metrics['aupro'])}")
    return "\n".join(lines)


def pixel_auroc(masks, maps) -> float | None:
    """AUROC over every test pixel: ground truth ``masks`` (N, H, W) nonzero = anomalous, against
    the anomaly ``maps`` (N, H, W). None when the pixels are all of one class."""
    truth = (np.asarray(masks).reshape(-1) > 0).astype(np.int64)
    return _auroc(truth, np.asarray(maps, dtype=np.float64).reshape(-1))


def aupro(masks, maps, fpr_limit: float = 0.3) -> float | None:
    """Area under the per-region-overlap curve up to ``fpr_limit``, normalised by it (MVTec AD).

    The ground truth's connected regions (8-connected, per image) each count once, whatever
    their size. At each threshold, PRO is the mean over regions of the fraction of the region's
    pixels above it; FPR is the fraction of normal pixels above it. The curve is exact: every
    distinct map value is a threshold (all pixels sorted once), and it is interpolated linearly
    at ``fpr_limit``, as MVTec's evaluation code does. None without regions or normal pixels.
    """
    from scipy import ndimage

    masks = np.asarray(masks) > 0
    maps = np.asarray(maps, dtype=np.float64)
    if masks.shape != maps.shape or masks.ndim != 3:
        raise ValueError(f"aupro: masks {masks.shape} and maps {maps.shape} must both be (N, H, W)")
    regions = np.zeros(masks.shape, np.int64)
    count = 0
    for i, mask in enumerate(masks):
        labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        regions[i] = np.where(labelled > 0, labelled + count, 0)
        count += n
    normal = ~masks
    if count == 0 or not normal.any():
        return None
    sizes = np.bincount(regions.reshape(-1), minlength=count + 1)
    # Each region pixel adds 1 / (its region's size * regions) to PRO, each normal pixel
    # 1 / (normal pixels) to FPR, as the threshold falls past it.
    flat = regions.reshape(-1)
    pro_step = np.where(flat > 0, 1.0 / (sizes[flat] * count), 0.0)
    fpr_step = np.where(flat == 0, 1.0 / normal.sum(), 0.0)
    order = np.argsort(-maps.reshape(-1), kind="stable")
    values = maps.reshape(-1)[order]
    pro, fpr = np.cumsum(pro_step[order]), np.cumsum(fpr_step[order])
    last = np.r_[np.flatnonzero(np.diff(values)), len(values) - 1]  # ties pass together
    pro, fpr = np.r_[0.0, pro[last]], np.r_[0.0, fpr[last]]
    inside = fpr <= fpr_limit
    k = int(inside.sum())
    x, y = fpr[:k], pro[:k]
    if k < len(fpr) and fpr[k] > fpr[k - 1]:
        t = (fpr_limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
        x, y = np.r_[x, fpr_limit], np.r_[y, pro[k - 1] + t * (pro[k] - pro[k - 1])]
    return float(np.trapezoid(y, x) / fpr_limit)
