import numpy as np
import pytest

from gonomaly.metrics import format_table, image_metrics


def test_confusion_and_rates_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.4, 0.9])
    groups = np.array(["normal"] * 4 + ["a", "b", "a"], dtype=object)
    m = image_metrics(labels, scores, threshold=0.5, groups=groups)
    assert m["confusion"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 2}
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # 12 normal/anomalous pairs; only (0.6, 0.4) is ordered wrongly
    assert m["image_auroc"] == pytest.approx(11 / 12)
    assert m["groups"]["normal"] == {"n": 4, "flagged": 1, "auroc": None}
    assert m["groups"]["a"] == {"n": 2, "flagged": 2, "auroc": 1.0}
    assert m["groups"]["b"]["auroc"] == pytest.approx(3 / 4)
    assert "normal" in format_table(m) and "AUROC" in format_table(m)


def test_single_class_has_no_auroc():
    m = image_metrics(np.zeros(5), np.arange(5.0), threshold=2.5)
    assert m["image_auroc"] is None and m["image_aupr"] is None
    assert m["confusion"]["fp"] == 2
