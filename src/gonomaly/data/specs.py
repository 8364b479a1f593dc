"""Data SPEC strings, parsed in one place: ``kind[:option=value,...]``.

``mnist``, ``mnist:classes=0,1``, ``fashion-mnist``, ``mnist-c``, ``mnist-c:corruptions=fog,stripe``.
``mvtec:ROOT/CATEGORY``, ``mvtec:ROOT`` (every category, one model each), ``mvtec:ROOT:pooled``;
``folder:ROOT`` (the MVTec layout) and ``folder:normal=DIR,abnormal=DIR[,mask=DIR][,test_normal=DIR]``.
A path may hold ':' and '/'; only a trailing ``:pooled`` is an option.
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
    """Labelled test images: float32 (N, C, H, W) in [0, 1]; label 1 = anomalous; optional
    ground-truth masks (N, H, W) uint8, 1 = anomalous pixel."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    ids: list[str]
    masks: np.ndarray | None = None

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


KINDS = ("mnist", "fashion-mnist", "mnist-c", "mvtec", "folder")
DEFAULT_IMAGE_SIZE = 64  # MVTec and folders: the seed's setup
_OPTIONS = {
    "mnist": {"classes", "n_train", "n_test"},
    "fashion-mnist": {"classes", "n_train", "n_test"},
    "mnist-c": {"corruptions", "n_train", "n_test", "root"},
    "folder": {"normal", "abnormal", "mask", "test_normal"},
}
POOLED = ":pooled"


def parse_spec(text: str) -> DataSpec:
    """Split ``kind:key=value,key=value``; a bare item continues the previous value (``classes=0,1``)."""
    kind, _, rest = text.strip().partition(":")
    if kind not in KINDS:
        raise GonomalyError(f"data spec '{text}': unknown kind '{kind}' (known: {', '.join(KINDS)})")
    if kind == "mvtec" or kind == "folder" and "=" not in rest:
        root, pooled = (rest[:-len(POOLED)], True) if kind == "mvtec" and rest.endswith(POOLED) else (rest, False)
        if not root:
            raise GonomalyError(f"data spec '{text}': {kind} needs a folder ({kind}:ROOT)")
        return DataSpec(kind, {"root": root, **({"pooled": "1"} if pooled else {})}, text)
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


def load_data(spec: str | DataSpec, data_dir: str | Path | None = None, seed: int = 0,
              image_size: int | None = None) -> DataBundle:
    """Load the training images and labelled test set that a SPEC describes (``image_size``:
    the side that MVTec and folder images are resized to, 64 by default)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind in ("mvtec", "folder"):
        bundles = load_bundles(spec, data_dir, seed, image_size)
        if len(bundles) > 1:
            names = ", ".join(b.description["category"] for b in bundles)
            raise GonomalyError(f"data spec '{spec.text}': {len(bundles)} categories ({names}), one "
                                f"model each: name one (ROOT/CATEGORY) or add :pooled")
        return bundles[0]
    if spec.kind == "mnist-c":
        return _load_mnist_c(spec, data_dir, seed)
    return _load_one_class(spec, data_dir)


def load_bundles(spec: str | DataSpec, data_dir: str | Path | None = None, seed: int = 0,
                 image_size: int | None = None) -> list[DataBundle]:
    """One bundle per model: per category for ``mvtec:ROOT``, else the one bundle."""
    from gonomaly.data.folder import scan_flat
    from gonomaly.data.mvtec import bundle_from_layout, category_folders, pool_bundles, scan_category

    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind not in ("mvtec", "folder"):
        return [load_data(spec, data_dir, seed)]
    size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
    if "root" not in spec.options:
        return [bundle_from_layout(scan_flat(spec.options), size, spec.text)]
    folders = category_folders(spec.options["root"]) if spec.kind == "mvtec" else [Path(spec.options["root"])]
    if "pooled" in spec.options:
        layouts = [scan_category(f) for f in folders]
        bundles = [bundle_from_layout(layout, size, spec.text, channels=3, prefix=f"{layout.name}/")
                   for layout in layouts]
        return [pool_bundles(bundles, spec.text)]
    return [bundle_from_layout(scan_category(f), size,
                               spec.text if len(folders) == 1 else f"mvtec:{f}") for f in folders]


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
