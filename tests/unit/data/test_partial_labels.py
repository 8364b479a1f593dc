"""Partial labels (-1, ELPV's uncertain 1/3 and 2/3 cells): left out of every pooled metric,
reported in their own group's row with the group as the positive class."""

from __future__ import annotations

import numpy as np
import pytest

from gonomaly.data import NORMAL_GROUP, PARTIAL_LABEL
from gonomaly.metrics import format_table, image_metrics

# Four normals, three certain defects, three uncertain ones that score BELOW every normal: any
# pooling of them would drag the pooled AUROC down, and an inverted orientation would give 1.0.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, PARTIAL_LABEL, PARTIAL_LABEL, PARTIAL_LABEL])
SCORES = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.9, 0.0, 0.01, 0.02])
GROUPS = np.array([NORMAL_GROUP] * 4 + ["defect_p1"] * 3 + ["defect_p033"] * 2 + ["defect_p067"],
                  dtype=object)


def test_partial_labels_are_not_pooled():
    m = image_metrics(LABELS, SCORES, threshold=0.4, groups=GROUPS)
    certain = LABELS != PARTIAL_LABEL
    alone = image_metrics(LABELS[certain], SCORES[certain], threshold=0.4, groups=GROUPS[certain])
    for key in ("image_auroc", "image_aupr", "confusion", "accuracy", "precision", "recall", "f1",
                "n_normal", "n_anomalous"):
        assert m[key] == alone[key], key
    assert m["image_auroc"] == pytest.approx(11 / 12)  # 0.6 normal above the 0.5 defect
    assert m["confusion"] == {"tn": 3, "fp": 1, "fn": 0, "tp": 3} and m["accuracy"] == 6 / 7
    assert m["n_partial"] == 3 and "n_partial" not in alone


def test_a_partial_group_has_its_own_auroc_with_the_group_positive():
    m = image_metrics(LABELS, SCORES, threshold=0.4, groups=GROUPS)
    assert list(m["groups"]) == [NORMAL_GROUP, "defect_p1", "defect_p033", "defect_p067"]
    assert m["groups"]["defect_p033"] == {"n": 2, "flagged": 0, "auroc": 0.0}  # below every normal
    assert m["groups"]["defect_p067"] == {"n": 1, "flagged": 0, "auroc": 0.0}
    assert m["groups"]["defect_p1"]["auroc"] == pytest.approx(11 / 12)
    raised = SCORES.copy()
    raised[7:] = [0.65, 0.8, 0.95]  # now above every normal: AUROC 1, not 0
    m = image_metrics(LABELS, raised, threshold=0.4, groups=GROUPS)
    assert m["groups"]["defect_p033"]["auroc"] == m["groups"]["defect_p067"]["auroc"] == 1.0
    assert m["groups"]["defect_p033"]["flagged"] == 2
    assert m["image_auroc"] == pytest.approx(11 / 12)  # the pooled figure does not move
    assert "defect_p067" in format_table(m)
