"""Custom image folders: the MVTec layout under a root, or flat folders of normal, abnormal
and mask images (``folder:normal=DIR,abnormal=DIR[,mask=DIR][,test_normal=DIR]``).

Flat masks match their image by file stem (``img.png`` <- ``img.png`` or ``img_mask.png``).
Without ``test_normal`` every fifth normal image (sorted by name) is held out as a normal
test image, so the test set is never all anomalous and the split is reproducible.
"""

from __future__ import annotations

from pathlib import Path

from gonomaly.data.mvtec import GOOD, Layout, _images, _mask_key, match_masks
from gonomaly.errors import GonomalyError

HOLD_OUT_EVERY = 5


def _folder(options: dict[str, str], key: str) -> list[Path]:
    folder = Path(options[key])
    if not folder.is_dir():
        raise GonomalyError(f"{folder}: no such folder ({key}=)")
    files = _images(folder)
    if not files:
        raise GonomalyError(f"{folder}: no image files ({key}=)")
    return files


def scan_flat(options: dict[str, str]) -> Layout:
    """The files of flat normal/abnormal folders, checked like an MVTec category."""
    if "normal" not in options:
        raise GonomalyError("folder spec: normal=DIR is required (the normal images)")
    normal = _folder(options, "normal")
    if "test_normal" in options:
        train, test_normal = normal, _folder(options, "test_normal")
    else:
        if len(normal) < 2:
            raise GonomalyError(f"{options['normal']}: one normal image cannot be split into "
                                f"training and test images (add test_normal=DIR)")
        held = {i for i in range(len(normal)) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1}
        train = [p for i, p in enumerate(normal) if i not in held]
        test_normal = [p for i, p in enumerate(normal) if i in held]
    abnormal = _folder(options, "abnormal") if "abnormal" in options else []
    name = Path(options["abnormal"]).name if abnormal else "abnormal"
    test = test_normal + abnormal
    defects = [GOOD] * len(test_normal) + [name] * len(abnormal)
    masks = None
    if "mask" in options:
        mask_dir = Path(options["mask"])
        if not mask_dir.is_dir():
            raise GonomalyError(f"{mask_dir}: no such folder (mask=)")
        found = {_mask_key(m): m for m in _images(mask_dir)}
        keys = [p.stem if d != GOOD else f"{GOOD}/{p.stem}" for p, d in zip(test, defects)]
        masks = match_masks(keys, test, defects, found, mask_dir)
    return Layout(Path(options["normal"]).name, train, test, defects, masks,
                  {"kind": "folder", "source": options["normal"]})
