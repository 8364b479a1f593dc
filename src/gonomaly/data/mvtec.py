"""MVTec AD: ``mvtec:ROOT/CATEGORY`` (one category), ``mvtec:ROOT`` (every category under ROOT,
one model each) and ``mvtec:ROOT:pooled`` (every category in one set, the reference notebooks'
single pooled model). The folder layout itself is read by ``layout``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gonomaly.data.base import DataBundle, DataSpec, ImageSet
from gonomaly.data.layout import bundle_from_layout, image_size_or_default, scan_category
from gonomaly.data.registry import DatasetKind, register
from gonomaly.errors import GonomalyError

POOLED = "pooled"


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


def load_category(folder: str | Path, image_size: int | None = None, spec: str | None = None) -> DataBundle:
    """One category folder as a ``DataBundle`` (``spec`` defaults to ``mvtec:FOLDER``)."""
    return bundle_from_layout(scan_category(folder), image_size_or_default(image_size),
                              spec or f"mvtec:{folder}")


def _rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images, 3, axis=1) if images.shape[1] == 1 else images


def pool_bundles(bundles: list[DataBundle], spec: str) -> DataBundle:
    """The reference notebooks' single pooled model: every category's training images in one
    set, RGB."""
    tests = [b.test for b in bundles]
    masks = None
    if all(t.masks is not None for t in tests):
        masks = np.concatenate([t.masks for t in tests])
    test = ImageSet(np.concatenate([_rgb(t.images) for t in tests]),
                    np.concatenate([t.labels for t in tests]),
                    np.concatenate([t.groups for t in tests]), sum((t.ids for t in tests), []), masks)
    return DataBundle(spec, np.concatenate([_rgb(b.train) for b in bundles]), test,
                      bundles[0].source, {"kind": "mvtec", "pooled": True,
                                          "categories": [b.description["category"] for b in bundles],
                                          "n_train": sum(len(b.train) for b in bundles),
                                          "n_test": len(test)})


def load_mvtec(spec: DataSpec, data_dir, seed: int, image_size: int | None) -> list[DataBundle]:
    """One bundle per category, or the pooled bundle (``data_dir`` and ``seed`` are unused)."""
    size = image_size_or_default(image_size)
    folders = category_folders(spec.options["root"])
    if POOLED in spec.options:
        layouts = [scan_category(f) for f in folders]  # every folder checked before decoding
        bundles = [bundle_from_layout(layout, size, spec.text, channels=3, prefix=f"{layout.name}/")
                   for layout in layouts]
        return [pool_bundles(bundles, spec.text)]
    return [bundle_from_layout(scan_category(f), size, spec.text if len(folders) == 1 else f"mvtec:{f}")
            for f in folders]


register(DatasetKind("mvtec", load_mvtec, takes_root=True, flags=(POOLED,)))
