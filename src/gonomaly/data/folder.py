"""Custom image folders: ``folder:ROOT`` (one category in the MVTec layout) or flat folders of
normal, abnormal and mask images (``folder:normal=DIR,abnormal=DIR[,mask=DIR][,test_normal=DIR]``).
Either takes ``val=DIR``: normal validation images, which ``fit`` calibrates on instead of holding
out training images (``folder:root=ROOT,val=DIR`` for the MVTec layout).

Flat masks match their image by file stem (``img.png`` <- ``img.png`` or ``img_mask.png``).
Without ``test_normal`` every fifth normal image (sorted by name) is held out as a normal
test image, so the test set is never all anomalous and the split is reproducible.
"""

from __future__ import annotations

from pathlib import Path

from gonomaly.data.arrays import unit_float
from gonomaly.data.base import DataBundle, DataSpec
from gonomaly.data.cache import decode_files
from gonomaly.data.images import list_images
from gonomaly.data.layout import (
    GOOD,
    Layout,
    bundle_from_layout,
    image_size_or_default,
    mask_key,
    match_masks,
    scan_category,
)
from gonomaly.data.registry import DatasetKind, register
from gonomaly.errors import GonomalyError

HOLD_OUT_EVERY = 5


def _folder(options: dict[str, str], key: str) -> list[Path]:
    folder = Path(options[key])
    if not folder.is_dir():
        raise GonomalyError(f"{folder}: no such folder ({key}=)")
    files = list_images(folder)
    if not files:
        raise GonomalyError(f"{folder}: no image files ({key}=)")
    return files


def _split_normal(options: dict[str, str]) -> tuple[list[Path], list[Path]]:
    """Training and normal test images: ``test_normal=`` or every fifth of ``normal=``."""
    normal = _folder(options, "normal")
    if "test_normal" in options:
        return normal, _folder(options, "test_normal")
    if len(normal) < 2:
        raise GonomalyError(f"{options['normal']}: one normal image cannot be split into "
                            f"training and test images (add test_normal=DIR)")
    held = {i for i in range(len(normal)) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1}
    return ([p for i, p in enumerate(normal) if i not in held],
            [p for i, p in enumerate(normal) if i in held])


def scan_flat(options: dict[str, str]) -> Layout:
    """The files of flat normal/abnormal folders, checked like an MVTec category."""
    if "normal" not in options:
        raise GonomalyError("folder spec: normal=DIR is required (the normal images)")
    train, test_normal = _split_normal(options)
    abnormal = _folder(options, "abnormal") if "abnormal" in options else []
    name = Path(options["abnormal"]).name if abnormal else "abnormal"
    test = test_normal + abnormal
    defects = [GOOD] * len(test_normal) + [name] * len(abnormal)
    masks = None
    if "mask" in options:
        mask_dir = Path(options["mask"])
        if not mask_dir.is_dir():
            raise GonomalyError(f"{mask_dir}: no such folder (mask=)")
        found = {mask_key(m): m for m in list_images(mask_dir)}
        keys = [p.stem if d != GOOD else f"{GOOD}/{p.stem}" for p, d in zip(test, defects)]
        masks = match_masks(keys, test, defects, found, mask_dir)
    return Layout(Path(options["normal"]).name, train, test, defects, masks,
                  {"kind": "folder", "source": options["normal"]})


def load_folder(spec: DataSpec, data_dir, seed: int, image_size: int | None) -> list[DataBundle]:
    """The one bundle of a folder SPEC (``data_dir`` and ``seed`` are unused)."""
    layout = scan_category(spec.options["root"]) if "root" in spec.options else scan_flat(spec.options)
    bundle = bundle_from_layout(layout, image_size_or_default(image_size), spec.text)
    if "val" in spec.options:
        files = _folder(spec.options, "val")
        size, channels = bundle.description["image_size"], bundle.description["channels"]
        val, _ = decode_files(files, None, size, channels, f"decode {layout.name} val")
        bundle.val = unit_float(val)
        bundle.description.update(n_val=len(files), val=spec.options["val"])
    return [bundle]


register(DatasetKind("folder", load_folder, takes_root=True,
                     options=frozenset({"root", "normal", "abnormal", "mask", "test_normal", "val"})))
