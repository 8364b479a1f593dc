"""ELPV: electroluminescence images of solar cells (Buerhop-Lutz et al. 2018; Deitsch et al. 2019),
as the PyPI package ``elpv-dataset`` ships them: 2,624 grey 300x300 cells, mono- or
polycrystalline, each with an expert's defect probability of 0, 1/3, 2/3 or 1.

Normal = probability 0; anomalous = probability 1. The test set holds:

- ``normal`` (label 0): a held-out ``test_fraction`` of the probability-0 cells;
- ``defect_p1`` (label 1): every probability-1 cell; the headline AUROC is p1 against normal;
- ``defect_p033`` and ``defect_p067`` (label ``PARTIAL_LABEL`` = -1): the uncertain 1/3 and 2/3
  cells, reported per group but left out of the pooled metrics. A label of -1 rather than 1 keeps
  them out of every pooled count by construction (a pooled metric selects ``labels >= 0``); a
  group's AUROC is measured as ``labels != 0`` against the normal cells.

The normal cells are split into train and test by a FIXED seed (``SPLIT_SEED``), not the run's
training seed, so the test set is the same in every run; the split is stratified by cell type and
made over all cells before ``cell_type`` filters them, so ``elpv:type=mono`` tests on exactly the
mono cells of ``elpv``'s test set.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from gonomaly.data.arrays import unit_float
from gonomaly.data.base import NORMAL_GROUP, PARTIAL_LABEL, DataBundle, DataSpec, ImageSet
from gonomaly.data.decode import resize_square
from gonomaly.data.layout import DEFAULT_IMAGE_SIZE, image_size_or_default
from gonomaly.data.registry import DatasetKind, register
from gonomaly.errors import GonomalyError

SPLIT_SEED = 20180101  # fixed: the test cells must not change with the training seed
TEST_FRACTION = 0.25
CELL_TYPES = ("mono", "poly")
# The defect probability in thirds (0-3) -> (group, label).
GROUPS = {0: (NORMAL_GROUP, 0), 1: ("defect_p033", PARTIAL_LABEL), 2: ("defect_p067", PARTIAL_LABEL),
          3: ("defect_p1", 1)}
TEST_ORDER = (0, 3, 1, 2)  # normal, the headline defects, then the uncertain ones


def resize_grey(cell: np.ndarray, size: int) -> np.ndarray:
    """A uint8 (H, W) cell resized to (size, size) as MVTec and folder images are resized."""
    return resize_square(Image.fromarray(cell), size)


def _package():
    try:
        from elpv_dataset import utils
    except ImportError:
        raise GonomalyError("elpv: the elpv-dataset package is not installed (pip install elpv-dataset)") from None
    return utils


@functools.lru_cache(maxsize=2)
def _cells(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Every cell resized: uint8 (N, 1, size, size), probability in thirds, type, id (file stem)."""
    utils = _package()
    raw, probabilities, types = utils.load_dataset()
    labels_file = Path(utils.__file__).parent / "data" / "labels.csv"
    names = (np.genfromtxt(labels_file, dtype=str, usecols=0) if labels_file.is_file()
             else np.array([f"cell{i + 1:04d}" for i in range(len(raw))]))
    if len(names) != len(raw):
        names = np.array([f"cell{i + 1:04d}" for i in range(len(raw))])
    cells = np.stack([resize_grey(cell, size) for cell in raw])[:, None]
    thirds = np.rint(np.asarray(probabilities) * 3).astype(np.int64)
    ids = tuple(f"elpv/{Path(name).stem}" for name in names)
    types = np.asarray(types, dtype=str)
    for array in (cells, thirds, types):
        array.setflags(write=False)  # cached: shared by every call
    return cells, thirds, types, ids


def elpv_split(thirds: np.ndarray, types: np.ndarray, test_fraction: float = TEST_FRACTION,
               split_seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the normal (probability-0) training and test cells: one permutation of all cells
    by ``split_seed``, then per cell type the first ``round(test_fraction * n)`` normals go to test."""
    if not 0 < test_fraction < 1:
        raise GonomalyError(f"elpv: test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(split_seed).permutation(len(thirds))
    test = []
    for cell_type in np.unique(types):
        normals = order[(thirds[order] == 0) & (types[order] == cell_type)]
        test.extend(normals[:round(test_fraction * len(normals))])
    test = np.sort(np.asarray(test, dtype=np.int64))
    train = np.setdiff1d(np.flatnonzero(thirds == 0), test)
    return train, test


def load_elpv(image_size: int = DEFAULT_IMAGE_SIZE, cell_type: str | None = None, test_fraction: float = TEST_FRACTION,
              split_seed: int = SPLIT_SEED) -> DataBundle:
    """Normal training cells and the labelled test set described in the module docstring, as
    float32 (N, 1, S, S) in [0, 1]; ``cell_type`` 'mono' or 'poly' keeps one type."""
    if cell_type not in (None, *CELL_TYPES):
        raise GonomalyError(f"elpv: unknown type '{cell_type}' (known: {', '.join(CELL_TYPES)})")
    if not 8 <= image_size <= 300:
        raise GonomalyError(f"elpv: image size must lie in 8-300, got {image_size}")
    cells, thirds, types, ids = _cells(int(image_size))
    train, normal_test = elpv_split(thirds, types, test_fraction, split_seed)
    keep = np.ones(len(cells), bool) if cell_type is None else types == cell_type
    train = train[keep[train]]
    test = np.concatenate([normal_test[keep[normal_test]]]
                          + [np.flatnonzero((thirds == third) & keep) for third in TEST_ORDER[1:]])
    groups = np.array([GROUPS[third][0] for third in thirds[test]], dtype=object)
    labels = np.array([GROUPS[third][1] for third in thirds[test]], dtype=np.int64)
    spec = "elpv" if cell_type is None else f"elpv:type={cell_type}"
    description = {"category": spec, "cell_type": cell_type or "all", "image_size": int(image_size),
                   "split_seed": split_seed, "test_fraction": test_fraction, "n_train": len(train),
                   "n_test": {name: int((groups == name).sum()) for name, _ in GROUPS.values()}}
    return DataBundle(spec=spec, train=unit_float(cells[train]),
                      test=ImageSet(unit_float(cells[test]), labels, groups, [ids[i] for i in test]),
                      source="elpv-dataset (Buerhop-Lutz et al. 2018)", description=description)


def load_elpv_spec(spec: DataSpec, data_dir, seed: int, image_size: int | None) -> list[DataBundle]:
    """``elpv[:type=mono|poly]`` (``image_size``: 64 by default; ``data_dir`` is unused, and so is
    ``seed``: the test cells are the same in every run)."""
    cell_type = spec.options.get("type")
    if cell_type is not None and cell_type not in CELL_TYPES:
        raise spec.error(f"type must be one of {', '.join(CELL_TYPES)}")
    return [load_elpv(image_size_or_default(image_size), cell_type)]


register(DatasetKind("elpv", load_elpv_spec, options=frozenset({"type"})))
