"""Layouts: the files of one category, checked, and their decoding into a ``DataBundle``.

The MVTec AD layout (anomalib's ``Folder`` convention), read by both ``mvtec:`` and
``folder:ROOT``: a category folder holds ``train/good/*``, ``test/good/*``, ``test/<defect>/*``
and, optionally, ``ground_truth/<defect>/<stem>_mask.png`` per defective test image.
``scan_category`` turns such a folder into a ``Layout`` (normal images exist, every mask has its
image, masks are all-or-nothing: ``match_masks``); ``bundle_from_layout`` decodes and resizes
any layout through the decode cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gonomaly.data.arrays import unit_float
from gonomaly.data.base import NORMAL_GROUP, DataBundle, ImageSet
from gonomaly.data.cache import decode_files
from gonomaly.data.decode import is_grey
from gonomaly.data.images import list_images
from gonomaly.errors import GonomalyError

log = logging.getLogger("gonomaly")

GOOD = "good"  # the folder of normal images, under train/ and test/
DEFAULT_IMAGE_SIZE = 64  # the MVTec AD setting of the reference notebooks
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
# Augmentations that keep an image of an MVTec AD category normal, by category name (a folder in
# the MVTec layout with a category's name gets its entry). Textures are isotropic; bottle,
# hazelnut, metal_nut and screw are seen from above in any orientation. Objects with a fixed
# orientation or handedness are not flipped: transistor (a misplaced one is a defect), cable
# (the wire colours go round in one order), metal_nut ("flip" is one of its defects), capsule and
# pill (printed text), toothbrush and zipper (upright).
AUGMENTATIONS = {
    "bottle": "hflip,vflip,rot90", "carpet": "hflip,vflip,rot90", "grid": "hflip,vflip,rot90",
    "hazelnut": "hflip,vflip,rot90", "leather": "hflip,vflip,rot90", "tile": "hflip,vflip,rot90",
    "wood": "hflip,vflip,rot90", "screw": "hflip,vflip,rot90", "metal_nut": "rot90",
    "toothbrush": "hflip", "zipper": "hflip", "capsule": "", "pill": "", "cable": "",
    "transistor": "",
}


@dataclass
class Layout:
    """The files of one category: normal training images and the labelled test images."""

    name: str
    train: list[Path]
    test: list[Path]
    defects: list[str]  # per test image: "good" or the defect's name
    masks: list[Path | None] | None  # per test image; None when the dataset has no masks
    extra: dict = field(default_factory=dict)


def mask_key(mask: Path, defect: str = "") -> str:
    """The key ``match_masks`` matches a mask file by: its stem without ``_mask``, after
    ``defect/`` when given."""
    stem = mask.stem[:-5] if mask.stem.endswith("_mask") else mask.stem
    return f"{defect}/{stem}" if defect else stem


def match_masks(keys: list[str], paths: list[Path], defects: list[str], masks: dict[str, Path],
                where: Path) -> list[Path | None] | None:
    """Each test image's mask by key (``defect/stem`` for MVTec, ``stem`` for flat folders);
    refuse a mask without its image, and a defective image without a mask when any mask exists."""
    if not masks:
        return None
    index = set(keys)
    for key, mask in masks.items():
        if key not in index:
            raise GonomalyError(f"{mask}: mask without its image ({key} is not a test image)")
    matched = [masks.get(k) for k in keys]
    for path, defect, mask in zip(paths, defects, matched):
        if defect != GOOD and mask is None:
            raise GonomalyError(f"{path}: defective image without a mask in {where}")
    return matched


def scan_category(root: str | Path) -> Layout:
    """The files of an MVTec-style category folder, checked."""
    root = Path(root)
    if not root.is_dir():
        raise GonomalyError(f"{root}: no such folder")
    train = list_images(root / "train" / GOOD)
    if not train:
        raise GonomalyError(f"{root}: no normal training images (expected {root / 'train' / GOOD}/*.png)")
    test_root = root / "test"
    groups = sorted(d.name for d in test_root.iterdir() if d.is_dir()) if test_root.is_dir() else []
    groups = ([GOOD] if GOOD in groups else []) + [g for g in groups if g != GOOD]
    test, defects = [], []
    for group in groups:
        files = list_images(test_root / group)
        test += files
        defects += [group] * len(files)
    if not test:
        raise GonomalyError(f"{root}: no test images (expected {test_root}/good and {test_root}/<defect>)")
    masks = {}
    gt = root / "ground_truth"
    for folder in (sorted(d for d in gt.iterdir() if d.is_dir()) if gt.is_dir() else []):
        masks.update({mask_key(m, folder.name): m for m in list_images(folder)})
    keys = [f"{d}/{p.stem}" for p, d in zip(test, defects)]
    return Layout(root.name, train, test, defects, match_masks(keys, test, defects, masks, gt))


def layout_channels(layout: Layout) -> int:
    """1 when every image of the category is greyscale (grid, screw, zipper), else 3."""
    return 1 if all(is_grey(p) for p in layout.train + layout.test) else 3


def bundle_from_layout(layout: Layout, size: int, spec: str, channels: int | None = None,
                       prefix: str = "") -> DataBundle:
    """A ``DataBundle``: float images (N, C, S, S), masks (N, S, S) uint8 when the dataset has
    them. Test groups are the defect names (``prefix`` + name); good test images are normal."""
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise GonomalyError(f"image size {size}: must lie in {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE}")
    channels = channels or layout_channels(layout)
    train, _ = decode_files(layout.train, None, size, channels, f"decode {layout.name} train")
    test, masks = decode_files(layout.test, layout.masks, size, channels, f"decode {layout.name} test")
    labels = np.array([d != GOOD for d in layout.defects], np.int64)
    groups = np.array([NORMAL_GROUP if d == GOOD else prefix + d for d in layout.defects], object)
    ids = [str(p) for p in layout.test]
    log.info("%s: %d training, %d test images (%d defective) at %dx%d, %d channel(s)%s", layout.name,
             len(train), len(test), labels.sum(), size, size, channels,
             ", with masks" if masks is not None else "")
    return DataBundle(spec, unit_float(train), ImageSet(unit_float(test), labels, groups, ids, masks),
                      str(layout.extra.get("source", layout.train[0].parent.parent.parent)),
                      {"kind": layout.extra.get("kind", "mvtec"), "category": layout.name,
                       "image_size": size, "channels": channels, "n_train": len(train),
                       "n_test": len(test), "augment": AUGMENTATIONS.get(layout.name)})


def image_size_or_default(image_size: int | None) -> int:
    """The side images are resized to: ``image_size``, or 64 when not given."""
    return DEFAULT_IMAGE_SIZE if image_size is None else image_size
