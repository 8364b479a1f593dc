"""Pixel AUROC and AUPRO on hand-made maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gonomaly.metrics import aupro, pixel_auroc


def test_pixel_auroc_known_answers():
    masks = np.array([[[1, 0], [0, 0]]])
    assert pixel_auroc(masks, np.array([[[0.9, 0.5], [0.1, 0.6]]])) == 1.0
    # The anomalous pixel (0.55) beats two of the three normal ones.
    assert pixel_auroc(masks, np.array([[[0.55, 0.5], [0.1, 0.6]]])) == pytest.approx(2 / 3)
    assert pixel_auroc(np.zeros((1, 2, 2)), np.ones((1, 2, 2))) is None


def _two_regions():
    # One row: region A = pixels 0-1 (two pixels), region B = pixel 3; normal pixels 2, 4, 5.
    masks = np.array([[[1, 1, 0, 1, 0, 0]]])
    maps = np.array([[[0.9, 0.2, 0.85, 0.8, 0.1, 0.05]]])
    return masks, maps


def test_aupro_counts_regions_not_pixels():
    masks, maps = _two_regions()
    # Descending thresholds: 0.9 covers half of A (PRO 0.25, FPR 0); 0.85 is normal (FPR 1/3);
    # 0.8 covers B (PRO 0.75); 0.2 the rest of A (PRO 1). Up to FPR 0.3 PRO stays 0.25.
    assert aupro(masks, maps) == pytest.approx(0.25)
    # Up to 0.5: 0.25 over [0, 1/3], then 1 over [1/3, 0.5]: (0.25/3 + 1/6) / 0.5 = 0.5.
    assert aupro(masks, maps, fpr_limit=0.5) == pytest.approx(0.5)


def test_aupro_perfect_and_uninformative_maps():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[0, 2:5, 2:5] = 1
    masks[0, 10:15, 9:11] = 1
    masks[2, 7, 7] = 1
    assert aupro(masks, masks + 0.1 * rng.random(masks.shape) * (masks == 0)) == pytest.approx(1.0)
    # A constant map: every pixel passes at once, the curve is the diagonal: 0.3 / 2.
    assert aupro(masks, np.zeros(masks.shape)) == pytest.approx(0.15)
    assert aupro(np.zeros((1, 4, 4)), rng.random((1, 4, 4))) is None


def _aupro_by_thresholds(masks, maps, limit=0.3):
    """The definition, one threshold at a time (as MVTec's evaluation code)."""
    labelled = [ndimage.label(m, structure=np.ones((3, 3)))[0] for m in masks]
    regions = [(i, r) for i, lab in enumerate(labelled) for r in range(1, lab.max() + 1)]
    normal = masks == 0
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        pro = np.mean([above[i][labelled[i] == r].mean() for i, r in regions])
        points.append((above[normal].mean(), pro))
    fpr, pro = map(np.array, zip(*points))
    keep = fpr <= limit
    x, y = fpr[keep], pro[keep]
    if not keep.all():
        j = np.argmax(~keep)
        y = np.r_[y, np.interp(limit, fpr[j - 1:j + 1], pro[j - 1:j + 1])]
        x = np.r_[x, limit]
    return np.trapezoid(y, x) / limit


def test_aupro_matches_the_definition_on_random_maps():
    rng = np.random.default_rng(1)
    masks = (ndimage.gaussian_filter(rng.random((4, 24, 24)), 2) > 0.52).astype(np.uint8)
    maps = ndimage.gaussian_filter(masks + rng.normal(0, 0.6, masks.shape), 1).round(2)  # with ties
    assert masks.sum() > 20 and len(np.unique(maps)) < maps.size
    assert aupro(masks, maps) == pytest.approx(_aupro_by_thresholds(masks, maps), abs=1e-9)
