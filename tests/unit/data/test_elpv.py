"""ELPV solar cells through the elpv-dataset package: groups, labels, the fixed normal split and
the type filter. Skipped where the package is not installed (pip install elpv-dataset)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from gonomaly.data import NORMAL_GROUP
from gonomaly.data.elpv import PARTIAL_LABEL, elpv_split, load_elpv, resize_grey
from gonomaly.errors import GonomalyError

SIZE = 32
# Cells per (type, defect probability in thirds) in elpv-dataset 1.0.0.
COUNTS = {"mono": {0: 588, 1: 117, 2: 56, 3: 313}, "poly": {0: 920, 1: 178, 2: 50, 3: 402}}
GROUP_OF = {0: NORMAL_GROUP, 1: "defect_p033", 2: "defect_p067", 3: "defect_p1"}


@pytest.fixture(scope="module")
def cells():
    pytest.importorskip("elpv_dataset")
    return {cell_type: load_elpv(SIZE, cell_type) for cell_type in (None, "mono", "poly")}


def _expected(cell_types) -> dict[str, int]:
    counts = {GROUP_OF[third]: sum(COUNTS[t][third] for t in cell_types) for third in (1, 2, 3)}
    counts[NORMAL_GROUP] = sum(round(0.25 * COUNTS[t][0]) for t in cell_types)
    return counts


@pytest.mark.parametrize("cell_type", [None, "mono", "poly"])
def test_groups_labels_and_shapes(cells, cell_type):
    bundle = cells[cell_type]
    kinds = list(COUNTS) if cell_type is None else [cell_type]
    test = bundle.test
    groups, counts = np.unique(test.groups.astype(str), return_counts=True)
    assert dict(zip(groups, counts.tolist(), strict=True)) == _expected(kinds)
    assert len(bundle.train) == sum(COUNTS[t][0] for t in kinds) - _expected(kinds)[NORMAL_GROUP]
    assert bundle.train.shape[1:] == test.images.shape[1:] == (1, SIZE, SIZE)
    assert bundle.train.dtype == test.images.dtype == np.float32
    assert 0 <= bundle.train.min() and bundle.train.max() <= 1 and test.images.std() > 0.05
    label_of = {NORMAL_GROUP: 0, "defect_p1": 1, "defect_p033": PARTIAL_LABEL, "defect_p067": PARTIAL_LABEL}
    assert all(label_of[g] == label for g, label in zip(test.groups, test.labels, strict=True))
    assert len(test.ids) == len(set(test.ids)) == len(test) and test.masks is None


def test_the_normal_split_is_disjoint_fixed_and_shared_by_the_type_filter(cells):
    everything = cells[None]
    thirds = np.zeros(10, np.int64)
    types = np.array(["mono"] * 4 + ["poly"] * 6)
    train, test = elpv_split(thirds, types)
    assert not set(train) & set(test) and sorted([*train, *test]) == list(range(10))
    normal_test = {i for i, g in zip(everything.test.ids, everything.test.groups, strict=True) if g == NORMAL_GROUP}
    by_type = set()
    for cell_type in COUNTS:
        part = cells[cell_type].test
        by_type |= {i for i, g in zip(part.ids, part.groups, strict=True) if g == NORMAL_GROUP}
    assert by_type == normal_test
    again = load_elpv(SIZE)
    np.testing.assert_array_equal(again.train, everything.train)
    assert again.test.ids == everything.test.ids
    other_split = load_elpv(SIZE, split_seed=1)
    assert other_split.test.ids != everything.test.ids


def test_no_training_cell_is_a_test_cell(cells):
    everything = cells[None]
    train_rows = {row.tobytes() for row in (everything.train * 255).round().astype(np.uint8)}
    normals = everything.test.images[everything.test.groups == NORMAL_GROUP]
    shared = sum(row.tobytes() in train_rows for row in (normals * 255).round().astype(np.uint8))
    assert shared == 0


def test_resize_is_anti_aliased():
    """A one-pixel checkerboard shrinks to even grey, not to a pattern of black and white."""
    board = ((np.indices((300, 300)).sum(0) % 2) * 255).astype(np.uint8)
    small = resize_grey(board, SIZE)
    assert small.shape == (SIZE, SIZE) and np.abs(small.astype(int) - 128).max() <= 8


def test_bad_options_and_a_missing_package_are_one_line_errors(monkeypatch):
    with pytest.raises(GonomalyError, match="unknown type 'thin'"):
        load_elpv(cell_type="thin")
    with pytest.raises(GonomalyError, match="test_fraction"):
        elpv_split(np.zeros(4, np.int64), np.array(["mono"] * 4), test_fraction=1.0)
    monkeypatch.setitem(sys.modules, "elpv_dataset", None)  # import fails as if not installed
    with pytest.raises(GonomalyError, match=r"pip install elpv-dataset"):
        load_elpv(SIZE + 1)  # a size no other test loads, so nothing is cached for it


def test_resize_is_the_one_of_image_files(tmp_path):
    """ELPV cells are resized exactly as a greyscale image file of MVTec or a folder."""
    from PIL import Image

    from gonomaly.data.decode import decode_resized

    cell = np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)
    Image.fromarray(cell).save(tmp_path / "cell.png")
    decoded, _ = decode_resized(tmp_path / "cell.png", SIZE, channels=1)
    np.testing.assert_array_equal(resize_grey(cell, SIZE), decoded[0])


def test_the_spec_loads_through_the_registry(cells):
    from gonomaly.data import load_data, parse_spec

    assert parse_spec("elpv:type=mono").options == {"type": "mono"}
    bundle = load_data("elpv:type=mono", image_size=SIZE, seed=7)  # the seed does not move the split
    expected = cells["mono"]
    np.testing.assert_array_equal(bundle.train, expected.train)
    assert bundle.test.ids == expected.test.ids and bundle.spec == "elpv:type=mono"
    assert load_data("elpv", image_size=SIZE).test.ids == cells[None].test.ids
    with pytest.raises(GonomalyError, match="type must be one of mono, poly"):
        load_data("elpv:type=thin", image_size=SIZE)
    with pytest.raises(GonomalyError, match="unknown option 'kind'"):
        load_data("elpv:kind=mono", image_size=SIZE)
