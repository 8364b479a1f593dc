"""Synthetic anomalies on real MNIST digits and real MVTec bottle images: each generator changes an
image only inside its mask, the masks are non-empty, and the output is reproducible per seed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gonomaly.data import NORMAL_GROUP, load_data
from gonomaly.data.synthetic import (
    GENERATORS,
    MIN_CHANGE,
    make_synthetic,
    perlin_mask,
    perlin_noise,
    synthesize_one,
    synthetic_image_set,
)
from gonomaly.errors import GonomalyError

# GONOMALY_DATA names the shared data folder (as for MNIST); otherwise ../shared/data beside the repository.
DATA = Path(os.environ.get("GONOMALY_DATA") or Path(__file__).resolve().parents[3].parent / "shared" / "data")
BOTTLE_GOOD = DATA / "mvtec_ad" / "bottle" / "train" / "good"
KINDS = list(GENERATORS)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """200 real MNIST training digits, float32 (200, 1, 28, 28)."""
    return load_data("mnist:n_train=200,n_test=10").train


@pytest.fixture(scope="module")
def bottles() -> np.ndarray:
    """Six real MVTec bottle training images, RGB, resized to 64 px: float32 (6, 3, 64, 64)."""
    files = sorted(BOTTLE_GOOD.glob("*.png"))[:6]
    if len(files) < 6:
        pytest.skip(f"{BOTTLE_GOOD} is absent")
    arrays = []
    for path in files:
        with Image.open(path) as image:
            arrays.append(np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR), np.float32))
    return np.stack(arrays).transpose(0, 3, 1, 2) / 255


@pytest.fixture(params=["digits", "bottles"])
def images(request) -> np.ndarray:
    return request.getfixturevalue(request.param)


def test_each_generator_changes_only_inside_a_non_empty_mask(images):
    count = 3 * len(KINDS)
    anomalous, masks, kinds = make_synthetic(images, n=count, rng=0)
    assert anomalous.shape == (count, *images.shape[1:]) and anomalous.dtype == np.float32
    assert masks.shape == (count, *images.shape[2:]) and masks.dtype == np.uint8
    assert list(kinds) == [KINDS[i % len(KINDS)] for i in range(count)]
    assert set(np.unique(masks)) <= {0, 1}
    assert anomalous.min() >= 0 and anomalous.max() <= 1
    for i in range(count):
        original, inside = images[i % len(images)], masks[i].astype(bool)
        assert inside.any(), kinds[i]
        np.testing.assert_array_equal(anomalous[i][:, ~inside], original[:, ~inside], err_msg=kinds[i])
        assert np.abs(anomalous[i] - original)[:, inside].mean() >= MIN_CHANGE, kinds[i]


@pytest.mark.parametrize("kind", KINDS)
def test_each_raw_generator_keeps_the_outside_of_its_mask(images, kind):
    """The generators themselves, before make_synthetic's final copy of the outside pixels."""
    rng = np.random.default_rng(1)
    for i in range(4):
        changed, mask = GENERATORS[kind](images[i], images[i + 1], rng)
        outside = ~mask.astype(bool)
        assert changed.shape == images[i].shape and mask.shape == images.shape[2:]
        np.testing.assert_array_equal(changed[:, outside], images[i][:, outside])


def test_same_seed_same_output_different_seed_different_output(images):
    first = make_synthetic(images, n=len(KINDS), rng=7)
    again = make_synthetic(images, n=len(KINDS), rng=np.random.default_rng(7))
    other = make_synthetic(images, n=len(KINDS), rng=8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for i in range(len(KINDS)):
        assert not np.array_equal(first[1][i], other[1][i]), KINDS[i]


def test_an_output_does_not_depend_on_how_many_are_made(digits):
    few, few_masks, _ = make_synthetic(digits, n=5, rng=3)
    many, many_masks, _ = make_synthetic(digits, n=40, rng=3)
    np.testing.assert_array_equal(few, many[:5])
    np.testing.assert_array_equal(few_masks, many_masks[:5])


def test_perlin_blends_texture_from_another_image():
    """A black image with white sources: every changed pixel took its value from a source."""
    black = np.zeros((1, 1, 32, 32), np.float32)
    white = np.ones((4, 1, 32, 32), np.float32)
    anomalous, masks, _ = make_synthetic(black, white, n=6, rng=0, kinds=["perlin"])
    for image, mask in zip(anomalous, masks, strict=True):
        values = image[0][mask.astype(bool)]
        assert values.min() >= 0.1 - 1e-6  # opacity at least 0.1
        assert image[0][~mask.astype(bool)].max() == 0


def test_perlin_noise_is_smooth_and_centred():
    rng = np.random.default_rng(0)
    noise = perlin_noise((64, 64), (4, 4), rng)
    assert noise.shape == (64, 64) and np.abs(noise).max() <= np.sqrt(2)
    assert np.abs(noise[::16, ::16]).max() < 1e-12  # zero on the lattice corners
    assert np.abs(np.diff(noise, axis=0)).max() < 0.5
    assert perlin_mask((28, 28), rng).dtype == np.uint8


def test_a_constant_image_cannot_be_changed_by_a_blur():
    grey = np.full((1, 28, 28), 0.5, np.float32)
    with pytest.raises(GonomalyError, match="blur cannot change"):
        synthesize_one(grey, grey, "blur", np.random.default_rng(0))


def test_bad_input_is_a_one_line_error(digits):
    with pytest.raises(GonomalyError, match="unknown kind"):
        make_synthetic(digits, kinds=["nope"])
    with pytest.raises(GonomalyError, match=r"\(N, C, H, W\)"):
        make_synthetic(digits[0])
    with pytest.raises(GonomalyError, match=r"\[0, 1\]"):
        make_synthetic(digits * 2)
    with pytest.raises(GonomalyError, match="sources are"):
        make_synthetic(digits, digits[:, :, :20])


def test_synthetic_image_set_labels_normals_then_anomalies(digits):
    normals = digits[:10]
    labelled = synthetic_image_set(normals, digits, rng=0)
    assert len(labelled) == 20 and list(labelled.labels) == [0] * 10 + [1] * 10
    assert list(labelled.groups[:10]) == [NORMAL_GROUP] * 10
    assert list(labelled.groups[10:15]) == [f"synthetic_{kind}" for kind in KINDS]
    np.testing.assert_array_equal(labelled.images[:10], normals)
    assert labelled.masks[:10].sum() == 0 and all(m.any() for m in labelled.masks[10:])
