"""Data SPEC strings, parsed in one place: ``kind[:option=value,...]``.

``mnist``, ``mnist:classes=0,1``, ``fashion-mnist``, ``mnist-c``, ``mnist-c:corruptions=fog,stripe``.
Options shared by the MNIST kinds: ``classes`` (the one-class protocol), ``n_train`` and ``n_test``
(the first N images of each split).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gonomaly.data.sources import load_digits
from gonomaly.errors import GonomalyError

log = logging.getLogger("gonomaly")
NORMAL_GROUP = "normal"


@dataclass
class ImageSet:
    """Labelled test images: float32 (N, C, H, W) in [0, 1]; label 1 = anomalous."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class DataBundle:
    """Normal training images and a labelled test set from one SPEC."""

    spec: str
    train: np.ndarray
    test: ImageSet
    source: str
    description: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    kind: str
    options: dict[str, str]
    text: str


KINDS = ("mnist", "fashion-mnist", "mnist-c")
_OPTIONS = {
    "mnist": {"classes", "n_train", "n_test"},
    "fashion-mnist": {"classes", "n_train", "n_test"},
    "mnist-c": {"corruptions", "n_train", "n_test", "root"},
}


def parse_spec(text: str) -> DataSpec:
    """Split ``kind:key=value,key=value``; a bare item continues the previous value (``classes=0,1``)."""
    kind, _, rest = text.strip().partition(":")
    if kind not in KINDS:
        raise GonomalyError(f"data spec '{text}': unknown kind '{kind}' (known: {', '.join(KINDS)})")
    options: dict[str, str] = {}
    last_key = None
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if eq:
            if key not in _OPTIONS[kind]:
                raise GonomalyError(
                    f"data spec '{text}': unknown option '{key}' for {kind} "
                    f"(known: {', '.join(sorted(_OPTIONS[kind]))})"
                )
            options[key], last_key = value, key
        elif last_key is not None:
            options[last_key] += "," + item
        else:
            raise GonomalyError(f"data spec '{text}': '{item}' is not key=value")
    return DataSpec(kind, options, text)


def _int_option(spec: DataSpec, key: str, default: int | None) -> int | None:
    if key not in spec.options:
        return default
    try:
        value = int(spec.options[key])
    except ValueError:
        raise GonomalyError(f"data spec '{spec.text}': {key} must be an integer") from None
    if value < 1:
        raise GonomalyError(f"data spec '{spec.text}': {key} must be positive")
    return value


def _classes(spec: DataSpec) -> list[int] | None:
    if "classes" not in spec.options:
        return None
    try:
        classes = sorted({int(c) for c in spec.options["classes"].split(",")})
    except ValueError:
        raise GonomalyError(f"data spec '{spec.text}': classes must be digits such as 0,1") from None
    if not classes or not all(0 <= c <= 9 for c in classes):
        raise GonomalyError(f"data spec '{spec.text}': classes must lie in 0-9")
    return classes


def _to_float(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / np.float32(255.0))[:, None]


def load_data(spec: str | DataSpec, data_dir: str | Path | None = None, seed: int = 0) -> DataBundle:
    """Load the training images and labelled test set that a SPEC describes."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "mnist-c":
        return _load_mnist_c(spec, data_dir, seed)
    return _load_one_class(spec, data_dir)


def _load_one_class(spec: DataSpec, data_dir) -> DataBundle:
    digits = load_digits(spec.kind, data_dir)
    classes = _classes(spec)
    train_images = digits.train_images
    if classes is not None:
        train_images = train_images[np.isin(digits.train_labels, classes)]
    train_images = train_images[: _int_option(spec, "n_train", None)]
    n_test = _int_option(spec, "n_test", None)
    test_images, test_labels = digits.test_images[:n_test], digits.test_labels[:n_test]
    if classes is None:
        anomalous = np.zeros(len(test_labels), dtype=np.int64)
        groups = np.full(len(test_labels), NORMAL_GROUP, dtype=object)
    else:
        anomalous = (~np.isin(test_labels, classes)).astype(np.int64)
        groups = np.array([NORMAL_GROUP if not a else f"digit_{d}"
                           for a, d in zip(anomalous, test_labels)], dtype=object)
    ids = [f"{spec.kind}-test[{i}]" for i in range(len(test_images))]
    return DataBundle(spec.text, _to_float(train_images),
                      ImageSet(_to_float(test_images), anomalous, groups, ids), digits.source,
                      {"kind": spec.kind, "classes": classes, "n_train": len(train_images),
                       "n_test": len(test_images)})


def _load_mnist_c(spec: DataSpec, data_dir, seed: int) -> DataBundle:
    from gonomaly.data import corruptions
    from gonomaly.data.mnist_c import read_mnist_c

    digits = load_digits("mnist", data_dir)
    names = (spec.options["corruptions"].split(",") if "corruptions" in spec.options
             else list(corruptions.SEED_CORRUPTIONS))
    unknown = [n for n in names if n not in corruptions.ALL_CORRUPTIONS]
    if unknown:
        raise GonomalyError(f"data spec '{spec.text}': unknown corruption(s) {', '.join(unknown)} "
                            f"(known: {', '.join(corruptions.ALL_CORRUPTIONS)})")
    train_images = digits.train_images[: _int_option(spec, "n_train", None)]
    n_test = _int_option(spec, "n_test", 2000)
    if "root" in spec.options:
        clean, corrupted = read_mnist_c(spec.options["root"], names)
        clean = clean[:n_test]
        source = f"{spec.options['root']} (MNIST-C files)"
    else:
        clean = digits.test_images[:n_test]
        corrupted = {name: corruptions.corrupt(clean, name, seed) for name in names}
        source = f"{digits.source}, corruptions generated with seed {seed}"
    parts = [clean] + [corrupted[n][:n_test] for n in names]
    images = np.concatenate(parts)
    labels = np.concatenate([np.zeros(len(clean), np.int64)] +
                            [np.ones(len(corrupted[n][:n_test]), np.int64) for n in names])
    groups = np.concatenate([np.full(len(p), g, dtype=object)
                             for p, g in zip(parts, [NORMAL_GROUP, *names])])
    ids = [f"{g}[{i}]" for p, g in zip(parts, [NORMAL_GROUP, *names]) for i in range(len(p))]
    log.info("mnist-c: %d clean + %d x %d corrupted test digits", len(clean), len(names), len(clean))
    return DataBundle(spec.text, _to_float(train_images), ImageSet(_to_float(images), labels, groups, ids),
                      source, {"kind": "mnist-c", "corruptions": names, "n_train": len(train_images),
                               "n_test_clean": len(clean)})
