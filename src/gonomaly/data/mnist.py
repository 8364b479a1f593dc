"""MNIST and Fashion-MNIST, ``mnist[:classes=0,1][,n_train=N][,n_test=N]``: without ``classes``
every test digit is normal; with it, the one-class protocol (training on the named classes, every
other test digit anomalous, grouped as ``digit_<d>``). The files come through ``sources``."""

from __future__ import annotations

import numpy as np

from gonomaly.data.arrays import unit_float
from gonomaly.data.base import NORMAL_GROUP, DataBundle, DataSpec, ImageSet
from gonomaly.data.registry import DatasetKind, register
from gonomaly.data.sources import load_digits

OPTIONS = frozenset({"classes", "n_train", "n_test"})


def normal_classes(spec: DataSpec) -> list[int] | None:
    """The ``classes`` option as sorted digits 0-9, or None when the SPEC has none."""
    if "classes" not in spec.options:
        return None
    try:
        classes = sorted({int(c) for c in spec.options["classes"].split(",")})
    except ValueError:
        raise spec.error("classes must be digits such as 0,1") from None
    if not classes or not all(0 <= c <= 9 for c in classes):
        raise spec.error("classes must lie in 0-9")
    return classes


def _test_labels(test_labels: np.ndarray, classes: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per test digit: 1 when anomalous, and its group."""
    if classes is None:
        return (np.zeros(len(test_labels), dtype=np.int64),
                np.full(len(test_labels), NORMAL_GROUP, dtype=object))
    anomalous = (~np.isin(test_labels, classes)).astype(np.int64)
    groups = np.array([NORMAL_GROUP if not a else f"digit_{d}" for a, d in zip(anomalous, test_labels)],
                      dtype=object)
    return anomalous, groups


def load_one_class(spec: DataSpec, data_dir, seed: int, image_size: int | None) -> list[DataBundle]:
    """The one bundle of an MNIST or Fashion-MNIST SPEC (``seed`` and ``image_size`` are unused)."""
    digits = load_digits(spec.kind, data_dir)
    classes = normal_classes(spec)
    train_images = digits.train_images
    if classes is not None:
        train_images = train_images[np.isin(digits.train_labels, classes)]
    train_images = train_images[: spec.int_option("n_train", None)]
    n_test = spec.int_option("n_test", None)
    test_images, test_labels = digits.test_images[:n_test], digits.test_labels[:n_test]
    anomalous, groups = _test_labels(test_labels, classes)
    ids = [f"{spec.kind}-test[{i}]" for i in range(len(test_images))]
    return [DataBundle(spec.text, unit_float(train_images)[:, None],
                       ImageSet(unit_float(test_images)[:, None], anomalous, groups, ids), digits.source,
                       {"kind": spec.kind, "classes": classes, "n_train": len(train_images),
                        "n_test": len(test_images)})]


register(DatasetKind("mnist", load_one_class, options=OPTIONS))
register(DatasetKind("fashion-mnist", load_one_class, options=OPTIONS))
