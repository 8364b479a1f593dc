"""MVTec AD and custom folders: layout parsing, masks, errors, and the real bottle category."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gonomaly.data import load_data, parse_spec
from gonomaly.data.specs import load_bundles
from gonomaly.errors import GonomalyError

# tests/conftest.py points GONOMALY_DATA at ../shared/data when it exists.
BOTTLE = Path(os.environ.get("GONOMALY_DATA", "/nonexistent")) / "mvtec_ad" / "bottle"
needs_bottle = pytest.mark.skipif(not BOTTLE.is_dir(), reason="$GONOMALY_DATA/mvtec_ad is absent")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_category(root: Path, rng, size: int = 40, grey: bool = False) -> Path:
    """train/good x5, test/good x2, test/crack x2 with masks: a bright square on noise."""
    shape = (size, size) if grey else (size, size, 3)

    def image(defect: bool):
        x = rng.integers(0, 60, shape, dtype=np.uint8)
        if defect:
            x[10:20, 10:20] = 255
        return x

    for i in range(5):
        _png(root / "train/good" / f"{i:03d}.png", image(False))
    for i in range(2):
        _png(root / "test/good" / f"{i:03d}.png", image(False))
        _png(root / "test/crack" / f"{i:03d}.png", image(True))
        mask = np.zeros((size, size), np.uint8)
        mask[10:20, 10:20] = 255
        _png(root / "ground_truth/crack" / f"{i:03d}_mask.png", mask)
    return root


def test_synthetic_category_layout(tmp_path, rng):
    root = make_category(tmp_path / "widget", rng)
    bundle = load_data(f"mvtec:{root}", image_size=16)
    assert bundle.train.shape == (5, 3, 16, 16) and bundle.test.images.shape == (4, 3, 16, 16)
    assert list(bundle.test.labels) == [0, 0, 1, 1]
    assert list(bundle.test.groups) == ["normal", "normal", "crack", "crack"]
    masks = bundle.test.masks
    assert masks.shape == (4, 16, 16) and set(np.unique(masks)) == {0, 1}  # nearest: still binary
    assert masks[:2].sum() == 0 and (masks[2:, 4:8, 4:8] == 1).all()  # 10:20 of 40 -> 4:8 of 16
    # The defect lies where its mask says: resized images and masks stay aligned.
    bright = bundle.test.images[2].mean(0) > 0.5
    assert bright[masks[2] == 1].mean() > 0.7 and bright[masks[2] == 0].mean() < 0.05


def test_root_of_categories_pooled_and_grey(tmp_path, rng):
    make_category(tmp_path / "mv" / "a_rgb", rng)
    make_category(tmp_path / "mv" / "b_grey", rng, grey=True)
    bundles = load_bundles(f"mvtec:{tmp_path / 'mv'}", image_size=16)
    assert [b.description["category"] for b in bundles] == ["a_rgb", "b_grey"]
    assert bundles[0].train.shape[1] == 3 and bundles[1].train.shape[1] == 1  # as the category is
    with pytest.raises(GonomalyError, match="2 categories"):
        load_data(f"mvtec:{tmp_path / 'mv'}")
    pooled = load_data(f"mvtec:{tmp_path / 'mv'}:pooled", image_size=16)
    assert pooled.train.shape == (10, 3, 16, 16) and len(pooled.test) == 8
    assert "b_grey/crack" in set(pooled.test.groups)
    assert parse_spec("mvtec:/a:b/c:pooled").options == {"root": "/a:b/c", "pooled": "1"}


def test_folder_specs(tmp_path, rng):
    root = make_category(tmp_path / "widget", rng)
    same = load_data(f"folder:{root}", image_size=16)
    assert same.train.shape == (5, 3, 16, 16) and same.test.masks is not None
    flat = load_data(f"folder:normal={root}/train/good,abnormal={root}/test/crack,"
                     f"mask={root}/ground_truth/crack", image_size=16)
    # Every fifth normal image is held out as a normal test image.
    assert len(flat.train) == 4 and list(flat.test.labels) == [0, 1, 1]
    assert flat.test.masks[0].sum() == 0 and flat.test.masks[1:].sum() > 0
    given = load_data(f"folder:normal={root}/train/good,test_normal={root}/test/good,"
                      f"abnormal={root}/test/crack", image_size=16)
    assert len(given.train) == 5 and list(given.test.labels) == [0, 0, 1, 1] and given.test.masks is None


@pytest.mark.parametrize("damage, message", [
    ("no_normal", "no normal training images"),
    ("orphan_mask", "mask without its image"),
    ("mask_size", "mask is 20x20, its image 40x40"),
    ("unreadable", "cannot read image"),
    ("missing_mask", "defective image without a mask"),
])
def test_bad_layouts(tmp_path, rng, damage, message):
    root = make_category(tmp_path / "widget", rng)
    if damage == "no_normal":
        for path in (root / "train/good").iterdir():
            path.unlink()
    elif damage == "orphan_mask":
        _png(root / "ground_truth/crack/007_mask.png", np.zeros((40, 40), np.uint8))
    elif damage == "mask_size":
        _png(root / "ground_truth/crack/001_mask.png", np.zeros((20, 20), np.uint8))
    elif damage == "unreadable":
        (root / "test/crack/001.png").write_bytes(b"not a png at all")
    elif damage == "missing_mask":
        (root / "ground_truth/crack/001_mask.png").unlink()
    with pytest.raises(GonomalyError, match=message) as info:
        load_data(f"mvtec:{root}", image_size=16)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)  # one line, names the file


def test_flat_folder_errors(tmp_path, rng):
    root = make_category(tmp_path / "widget", rng)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GonomalyError, match="no image files"):
        load_data(f"folder:normal={tmp_path / 'empty'}")
    with pytest.raises(GonomalyError, match="normal=DIR is required"):
        load_data(f"folder:abnormal={root}/test/crack")
    with pytest.raises(GonomalyError, match="mask without its image"):
        load_data(f"folder:normal={root}/train/good,abnormal={root}/test/good,"
                  f"mask={root}/ground_truth/crack", image_size=16)


@needs_bottle
def test_real_bottle_counts_and_masks():
    bundle = load_data(f"mvtec:{BOTTLE}", image_size=32)
    test = bundle.test
    assert len(bundle.train) == 209 and (test.labels == 0).sum() == 20 and (test.labels == 1).sum() == 63
    assert bundle.train.shape[1:] == (3, 32, 32) and test.masks.shape == (83, 32, 32)
    for image_id, label, group, mask in zip(test.ids, test.labels, test.groups, test.masks):
        path = Path(image_id)
        if label:
            truth = BOTTLE / "ground_truth" / path.parent.name / f"{path.stem}_mask.png"
            assert truth.is_file() and group == path.parent.name and mask.any(), image_id
        else:
            assert group == "normal" and not mask.any()
    with Image.open(BOTTLE / "ground_truth/broken_large/000_mask.png") as full:
        fraction = (np.asarray(full) > 127).mean()
    first = list(test.ids).index(str(BOTTLE / "test/broken_large/000.png"))
    assert abs(test.masks[first].mean() - fraction) < 0.02  # nearest-neighbour keeps the area


def test_cli_trains_one_model_per_category(tmp_path, rng, capsys):
    from cli_helpers import run_cli

    make_category(tmp_path / "mv" / "a", rng)
    make_category(tmp_path / "mv" / "b", rng, grey=True)
    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "-q", "train", "--model", "cae", "--data", f"mvtec:{tmp_path / 'mv'}",
                           "--image-size", "32", "--epochs", "1", "--width", "4", "--latent-dim", "4",
                           "--out", str(out))
    assert code == 0, err
    import json

    shapes = {d.name: json.loads((d / "config.json").read_text())["image_shape"] for d in out.iterdir()}
    assert shapes == {"a": [3, 32, 32], "b": [1, 32, 32]}
    code, _, err = run_cli(capsys, "-q", "evaluate", str(out / "a"), "--data", f"mvtec:{tmp_path / 'mv'}")
    assert code == 1 and "2 categories" in err and "\n" not in err.strip()
