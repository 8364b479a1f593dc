"""MVTec AD and folders in its layout (anomalib's ``Folder`` convention).

A category folder holds ``train/good/*``, ``test/good/*``, ``test/<defect>/*`` and, optionally,
``ground_truth/<defect>/<stem>_mask.png`` per defective test image. ``scan_category`` turns a
folder into a list of files (checked: normal images exist, every mask has its image, masks are
all-or-nothing); ``load_category`` decodes and resizes them (images bilinear with
anti-aliasing, masks nearest-neighbour) into a ``DataBundle``. Decoded arrays are cached under
the user cache, keyed by every file's path, size and mtime and the image size, so the 900x900
PNGs of MVTec are decoded once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from gonomaly.data.images import IMAGE_SUFFIXES
from gonomaly.errors import GonomalyError

log = logging.getLogger("gonomaly")

CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
              "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
# Augmentations that keep an image of the category normal. Textures are isotropic; bottle,
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
GOOD = "good"
GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N")


@dataclass
class Layout:
    """The files of one category: normal training images and the labelled test images."""

    name: str
    train: list[Path]
    test: list[Path]
    defects: list[str]  # per test image: "good" or the defect's name
    masks: list[Path | None] | None  # per test image; None when the dataset has no masks
    extra: dict = field(default_factory=dict)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()) \
        if folder.is_dir() else []


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


def _mask_key(mask: Path, defect: str = "") -> str:
    stem = mask.stem[:-5] if mask.stem.endswith("_mask") else mask.stem
    return f"{defect}/{stem}" if defect else stem


def scan_category(root: str | Path) -> Layout:
    """The files of an MVTec-style category folder, checked."""
    root = Path(root)
    if not root.is_dir():
        raise GonomalyError(f"{root}: no such folder")
    train = _images(root / "train" / GOOD)
    if not train:
        raise GonomalyError(f"{root}: no normal training images (expected {root / 'train' / GOOD}/*.png)")
    test_root = root / "test"
    groups = sorted(d.name for d in test_root.iterdir() if d.is_dir()) if test_root.is_dir() else []
    groups = ([GOOD] if GOOD in groups else []) + [g for g in groups if g != GOOD]
    test, defects = [], []
    for group in groups:
        files = _images(test_root / group)
        test += files
        defects += [group] * len(files)
    if not test:
        raise GonomalyError(f"{root}: no test images (expected {test_root}/good and {test_root}/<defect>)")
    masks = {}
    gt = root / "ground_truth"
    for folder in (sorted(d for d in gt.iterdir() if d.is_dir()) if gt.is_dir() else []):
        masks.update({_mask_key(m, folder.name): m for m in _images(folder)})
    keys = [f"{d}/{p.stem}" for p, d in zip(test, defects)]
    return Layout(root.name, train, test, defects, match_masks(keys, test, defects, masks, gt))


def category_folders(root: str | Path) -> list[Path]:
    """A category folder itself, or every category folder (with ``train/good``) under a root."""
    root = Path(root)
    if (root / "train").is_dir():
        return [root]
    found = sorted(d for d in root.iterdir() if (d / "train").is_dir()) if root.is_dir() else []
    if not found:
        raise GonomalyError(f"{root}: neither a category folder (train/, test/) nor a folder of "
                            f"categories")
    return found


# -- decoding ------------------------------------------------------------------------------
def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise GonomalyError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on malformed files
        raise GonomalyError(f"{path}: cannot read image ({' '.join(str(exc).split())[:200]})") from None


def _is_grey(path: Path) -> bool:
    try:
        with Image.open(path) as image:  # header only
            return image.mode in GREY_MODES
    except Exception as exc:  # noqa: BLE001
        raise GonomalyError(f"{path}: cannot read image ({' '.join(str(exc).split())[:200]})") from None


def _decode(path: Path, size: int, channels: int, expect: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple]:
    image = _open(path)
    if expect is not None and image.size != expect:
        raise GonomalyError(f"{path}: mask is {image.size[0]}x{image.size[1]}, its image "
                            f"{expect[0]}x{expect[1]}")
    original = image.size
    if expect is not None:  # a mask: nearest-neighbour keeps it binary
        mask = image.convert("L").resize((size, size), Image.NEAREST)
        return (np.asarray(mask) > 127).astype(np.uint8), original
    if image.mode in GREY_MODES[2:]:
        image = Image.fromarray((np.asarray(image, np.float64) / 65535 * 255).astype(np.uint8))
    image = image.convert("L" if channels == 1 else "RGB")
    # Shrink by an integer factor first (box filter, fast), then resize with anti-aliasing.
    factor = max(1, min(image.size) // (2 * size))
    if factor > 1:
        image = image.reduce(factor)
    array = np.asarray(image.resize((size, size), Image.BILINEAR), np.uint8)
    return (array[None] if channels == 1 else array.transpose(2, 0, 1)), original


def _cache_path(files: list[Path], size: int, channels: int) -> Path:
    from gonomaly.data.sources import cache_dir

    key = hashlib.sha256(json.dumps([size, channels] + [
        [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]).encode()).hexdigest()
    return cache_dir() / "images" / f"{key[:32]}.npz"


def decode_files(images: list[Path], masks: list[Path | None] | None, size: int, channels: int,
                 desc: str) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 images (N, C, S, S) and masks (N, S, S) (zeros where None); cached."""
    listed = images + [m for m in masks or [] if m is not None]
    for path in listed:
        if not path.is_file():
            raise GonomalyError(f"{path}: file not found")
    cache = _cache_path(listed, size, channels)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as saved:
                out = saved["images"], (saved["masks"] if masks is not None else None)
            if len(out[0]) == len(images):
                return out
        except (OSError, ValueError, KeyError):
            pass  # a broken cache file is rebuilt
    decoded, mask_arrays = [], []
    for i, path in enumerate(tqdm(images, desc=desc, unit="img", leave=False,
                                  disable=len(images) < 50 or not log.isEnabledFor(logging.INFO))):
        array, original = _decode(path, size, channels)
        decoded.append(array)
        if masks is not None:
            mask = masks[i]
            mask_arrays.append(np.zeros((size, size), np.uint8) if mask is None
                               else _decode(mask, size, 1, expect=original)[0])
    result = np.stack(decoded), (np.stack(mask_arrays) if masks is not None else None)
    try:
        from gonomaly.io import atomic_save_npz

        arrays = {"images": result[0]} | ({"masks": result[1]} if masks is not None else {})
        atomic_save_npz(cache, **arrays)
    except OSError as exc:  # a read-only cache only costs time
        log.info("could not cache decoded images in %s (%s)", cache, exc)
    return result


def layout_channels(layout: Layout) -> int:
    """1 when every image of the category is greyscale (grid, screw, zipper), else 3."""
    return 1 if all(_is_grey(p) for p in layout.train + layout.test) else 3


def bundle_from_layout(layout: Layout, size: int, spec: str, channels: int | None = None,
                       prefix: str = ""):
    """A ``DataBundle``: float images (N, C, S, S), masks (N, S, S) uint8 when the dataset has
    them. Test groups are the defect names (``prefix`` + name); good test images are normal."""
    from gonomaly.data.specs import NORMAL_GROUP, DataBundle, ImageSet

    if not 8 <= size <= 1024:
        raise GonomalyError(f"image size {size}: must lie in 8-1024")
    channels = channels or layout_channels(layout)
    train, _ = decode_files(layout.train, None, size, channels, f"decode {layout.name} train")
    test, masks = decode_files(layout.test, layout.masks, size, channels, f"decode {layout.name} test")
    labels = np.array([d != GOOD for d in layout.defects], np.int64)
    groups = np.array([NORMAL_GROUP if d == GOOD else prefix + d for d in layout.defects], object)
    ids = [str(p) for p in layout.test]
    scale = np.float32(255.0)
    log.info("%s: %d training, %d test images (%d defective) at %dx%d, %d channel(s)%s", layout.name,
             len(train), len(test), labels.sum(), size, size, channels,
             ", with masks" if masks is not None else "")
    return DataBundle(spec, train.astype(np.float32) / scale,
                      ImageSet(test.astype(np.float32) / scale, labels, groups, ids, masks),
                      str(layout.extra.get("source", layout.train[0].parent.parent.parent)),
                      {"kind": layout.extra.get("kind", "mvtec"), "category": layout.name,
                       "image_size": size, "channels": channels, "n_train": len(train),
                       "n_test": len(test), "augment": AUGMENTATIONS.get(layout.name)})


def pool_bundles(bundles: list, spec: str):
    """The seed's single pooled model: every category's training images in one set, RGB."""
    from gonomaly.data.specs import DataBundle, ImageSet

    def rgb(x):
        return np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x

    tests = [b.test for b in bundles]
    masks = None
    if all(t.masks is not None for t in tests):
        masks = np.concatenate([t.masks for t in tests])
    test = ImageSet(np.concatenate([rgb(t.images) for t in tests]),
                    np.concatenate([t.labels for t in tests]),
                    np.concatenate([t.groups for t in tests]), sum((t.ids for t in tests), []), masks)
    return DataBundle(spec, np.concatenate([rgb(b.train) for b in bundles]), test,
                      bundles[0].source, {"kind": "mvtec", "pooled": True,
                                          "categories": [b.description["category"] for b in bundles],
                                          "n_train": sum(len(b.train) for b in bundles),
                                          "n_test": len(test)})


def read_resized(path: str | Path, image_shape: tuple[int, int, int], *,
                 max_pixels: int = 50_000_000) -> np.ndarray:
    """One image file resized as training resized its images: float32 (C, S, S) in [0, 1]."""
    path = Path(path)
    channels, size, _ = image_shape
    try:
        with Image.open(path) as image:  # the size from the header, before decoding
            if image.size[0] * image.size[1] > max_pixels:
                raise GonomalyError(f"{path}: image is {image.size[0]}x{image.size[1]}, above the "
                                    f"limit of {max_pixels} pixels (--max-pixels)")
    except GonomalyError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on malformed files
        raise GonomalyError(f"{path}: cannot read image ({' '.join(str(exc).split())[:200]})") from None
    return _decode(path, size, channels)[0].astype(np.float32) / np.float32(255.0)
