"""Each MNIST-C corruption does what defines it, on real MNIST digits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import feature

from gonomaly.data import corruptions as C
from gonomaly.data import load_data
from gonomaly.data.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    IDENTITY,
    PROTOCOL_CORRUPTIONS,
    corrupt,
)
from gonomaly.errors import GonomalyError

SEED = 0
# Corruptions that draw nothing from the generator.
DETERMINISTIC = {"identity", "scale", "brightness", "stripe", "canny_edges"}
RANDOM = [name for name in CORRUPTIONS if name not in DETERMINISTIC]
N_DIGITS = 50


@pytest.fixture(scope="module")
def mnist_digits() -> np.ndarray:
    """The first 50 real MNIST test digits, uint8 (50, 28, 28)."""
    images = load_data(f"mnist:n_train=1,n_test={N_DIGITS}").test.images[:, 0]
    digits = np.rint(images * 255).astype(np.uint8)
    digits.setflags(write=False)
    return digits


def _centre_of_mass(images: np.ndarray) -> np.ndarray:
    """(N, 2) centres of mass as (row, col)."""
    return np.array([ndimage.center_of_mass(image.astype(np.float64)) for image in images])


def _ink(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).sum(axis=1, dtype=np.float64)


# --------------------------------------------------------------------------- registry


def test_registry_order_and_constants():
    assert list(CORRUPTIONS) == [
        "identity", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear",
        "scale", "rotate", "brightness", "translate", "stripe", "fog", "spatter",
        "dotted_line", "zigzag", "canny_edges",
    ]  # fmt: skip
    assert IDENTITY == "identity"
    assert ALL_CORRUPTIONS == tuple(list(CORRUPTIONS)[1:])
    assert len(ALL_CORRUPTIONS) == 15 and IDENTITY not in ALL_CORRUPTIONS
    assert PROTOCOL_CORRUPTIONS == tuple(n for n in ALL_CORRUPTIONS if n != "canny_edges")
    assert len(PROTOCOL_CORRUPTIONS) == 14


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_returns_uint8_digits_and_changes_them(mnist_digits, name):
    out = corrupt(mnist_digits, name, SEED)
    assert out.dtype == np.uint8
    assert out.shape == mnist_digits.shape
    changed = np.any(out != mnist_digits, axis=(1, 2))
    if name == IDENTITY:
        assert not changed.any()
    else:
        assert changed.all(), f"{name} left {np.flatnonzero(~changed)} unchanged"


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_single_image_functions_match_corrupt(mnist_digits, name):
    image = mnist_digits[3]
    out = CORRUPTIONS[name](image, C.image_rng(image, name, 7))
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    np.testing.assert_array_equal(out, corrupt(mnist_digits[3:4], name, 7)[0])


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_same_seed_same_result(mnist_digits, name):
    np.testing.assert_array_equal(
        corrupt(mnist_digits, name, 123), corrupt(mnist_digits, name, 123)
    )


@pytest.mark.parametrize("name", RANDOM)
def test_different_seed_different_result(mnist_digits, name):
    assert np.any(corrupt(mnist_digits, name, 1) != corrupt(mnist_digits, name, 2))


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_deterministic_corruptions_ignore_the_seed(mnist_digits, name):
    np.testing.assert_array_equal(corrupt(mnist_digits, name, 1), corrupt(mnist_digits, name, 2))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_per_image_independence(mnist_digits, name):
    whole = corrupt(mnist_digits, name, SEED)
    np.testing.assert_array_equal(corrupt(mnist_digits[5:10], name, SEED), whole[5:10])
    reordered = corrupt(mnist_digits[::-1], name, SEED)
    np.testing.assert_array_equal(reordered, whole[::-1])


def test_corruptions_of_one_seed_are_not_the_same_draw(mnist_digits):
    # rotate and shear both draw one sign first; the corruption index keeps their draws apart.
    signs = []
    for name in ("rotate", "shear"):
        rngs = [C.image_rng(image, name, SEED) for image in mnist_digits]
        signs.append([int(rng.integers(0, 2)) for rng in rngs])
    assert signs[0] != signs[1]


# --------------------------------------------------------------------------- errors


def test_unknown_name_raises(mnist_digits):
    with pytest.raises(GonomalyError, match="unknown corruption 'blur'.*shot_noise") as info:
        corrupt(mnist_digits, "blur", SEED)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((28, 28), np.uint8),
        np.zeros((2, 28, 27), np.uint8),
        np.zeros((2, 1, 28, 28), np.uint8),
        np.zeros((2, 28, 28), np.float32),
        np.zeros((2, 28, 28), np.int64),
    ],
    ids=["2d", "27-wide", "4d", "float32", "int64"],
)
def test_wrong_shape_or_dtype_raises(images):
    with pytest.raises(GonomalyError, match="shape|uint8"):
        corrupt(images, "stripe", SEED)


def test_non_array_and_bad_seed_raise(mnist_digits):
    with pytest.raises(GonomalyError, match="numpy array"):
        corrupt(mnist_digits.tolist(), "stripe", SEED)
    with pytest.raises(GonomalyError, match="seed"):
        corrupt(mnist_digits, "stripe", -1)
    with pytest.raises(GonomalyError, match="seed"):
        corrupt(mnist_digits, "stripe", 1.5)


def test_empty_batch():
    out = corrupt(np.zeros((0, 28, 28), np.uint8), "fog", SEED)
    assert out.shape == (0, 28, 28) and out.dtype == np.uint8


# --------------------------------------------------------------------------- definitions


def test_shot_noise_is_poisson_in_thirds(mnist_digits):
    out = corrupt(mnist_digits, "shot_noise", SEED)
    assert set(np.unique(out).tolist()) <= {0, 85, 170, 255}
    # Poisson(0) = 0: the background stays black.
    assert np.all(out[mnist_digits == 0] == 0)
    # Full-ink pixels: Poisson(3) / 3 clipped to 1 is 1 with probability P(Poisson(3) >= 3).
    p_full = 1 - np.exp(-3) * (1 + 3 + 9 / 2)
    observed = np.mean(out[mnist_digits == 255] == 255)
    assert abs(observed - p_full) < 0.05, observed


def test_impulse_noise_flips_17_percent_to_salt_or_pepper(mnist_digits):
    out = corrupt(mnist_digits, "impulse_noise", SEED)
    changed = out != mnist_digits
    assert set(np.unique(out[changed]).tolist()) <= {0, 255}
    # Grey pixels change whether salted or peppered: 17 % of them.
    grey = (mnist_digits > 0) & (mnist_digits < 255)
    assert abs(changed[grey].mean() - 0.17) < 0.03
    # Background pixels only show the salt: half of 17 %.
    assert abs(np.mean(out[mnist_digits == 0] == 255) - 0.085) < 0.015
    assert abs(np.mean(out[mnist_digits == 255] == 0) - 0.085) < 0.03


def _vertical_blur(x: np.ndarray) -> np.ndarray:
    """The published glass_blur's blur of (N, 28, 28) floats: sigma 0.7 down the columns only."""
    return ndimage.gaussian_filter(x, (0, 0.7, 0), mode="nearest", truncate=4.0)


def test_glass_blur_shuffles_a_blur_and_keeps_the_ink(mnist_digits):
    out = corrupt(mnist_digits, "glass_blur", SEED)
    # Blurring and swapping move ink but do not create or destroy it.
    np.testing.assert_allclose(_ink(out), _ink(mnist_digits), rtol=0.01)
    # It is not just the two Gaussian blurs: the swaps changed it.
    first = np.floor(_vertical_blur(mnist_digits / 255.0) * 255)
    plain = np.rint(_vertical_blur(first / 255.0) * 255)
    differs = np.abs(out - plain).max(axis=(1, 2))
    assert np.all(differs > 20)
    # And it is blurred: most saturated stroke pixels are gone (a blur along one axis keeps
    # about 6 % of them; a blur along both kept under 1 %).
    assert (out >= 250).sum() < 0.1 * (mnist_digits >= 250).sum()


def test_glass_blur_first_step_blurs_along_the_first_axis_only():
    image = np.zeros((28, 28), np.uint8)
    image[14, 14] = 255
    out = C.glass_blur_first_step(image)
    assert out.dtype == np.uint8
    # The bright pixel spreads up and down its column (sigma 0.7: 2 rows each way keep ink) ...
    column = out[:, 14].astype(np.int64)
    assert np.flatnonzero(column).tolist() == [12, 13, 14, 15, 16]
    assert 100 < column[14] < 255 and column[13] == column[15] > 20
    # ... and not sideways: every other column stays black.
    assert not np.delete(out, 14, axis=1).any()


def test_glass_blur_first_step_truncates_to_uint8(mnist_digits):
    out = np.stack([C.glass_blur_first_step(image) for image in mnist_digits])
    assert out.dtype == np.uint8
    blurred = _vertical_blur(mnist_digits / 255.0) * 255
    # np.uint8(x * 255) as the published generator: truncation, which rounding would not match.
    np.testing.assert_array_equal(out, np.floor(blurred))
    assert np.any(out != np.rint(blurred))


def test_glass_blur_swaps_the_uint8_values_then_blurs(mnist_digits):
    for image in mnist_digits[:10]:
        first = C.glass_blur_first_step(image)
        shuffled = C.glass_shuffle(first, C.image_rng(image, "glass_blur", SEED))
        # The swaps permute the uint8 pixels of the first step.
        assert shuffled.dtype == np.uint8
        np.testing.assert_array_equal(np.sort(shuffled, axis=None), np.sort(first, axis=None))
        assert np.any(shuffled != first)
        # The second blur starts from those uint8 values.
        expected = np.rint(np.clip(_vertical_blur(shuffled[None] / 255.0)[0], 0, 1) * 255)
        out = C.glass_blur(image, C.image_rng(image, "glass_blur", SEED))
        np.testing.assert_array_equal(out, expected)
    # Without the conversion between the steps the result would differ.
    image = mnist_digits[0]
    smooth = _vertical_blur(mnist_digits[:1] / 255.0)[0]
    unconverted = C.glass_shuffle(smooth, C.image_rng(image, "glass_blur", SEED))
    unconverted = np.rint(np.clip(_vertical_blur(unconverted[None])[0], 0, 1) * 255)
    assert np.any(C.glass_blur(image, C.image_rng(image, "glass_blur", SEED)) != unconverted)


def test_motion_blur_smears_along_one_direction_within_45_degrees(mnist_digits):
    out = corrupt(mnist_digits, "motion_blur", SEED)
    np.testing.assert_allclose(_ink(out), _ink(mnist_digits), rtol=0.05)
    shift = _centre_of_mass(out) - _centre_of_mass(mnist_digits)  # (row, col)
    # One-sided Gaussian kernel (sigma 3) over offsets 0..20: mean offset 2.09 px.
    magnitude = np.hypot(shift[:, 0], shift[:, 1])
    assert np.all((magnitude > 1.6) & (magnitude < 2.5)), magnitude
    # The angle is within [-45, 45] degrees of the x axis: a horizontal smear, one way.
    assert np.all(shift[:, 1] < 0)
    assert np.all(np.abs(shift[:, 0]) <= np.abs(shift[:, 1]) + 0.3)
    # The angles differ from image to image.
    assert np.ptp(shift[:, 0]) > 1.0


def test_shear_moves_top_and_bottom_halves_opposite_ways(mnist_digits):
    out = corrupt(mnist_digits, "shear", SEED).astype(np.float64)
    x = mnist_digits.astype(np.float64)
    ratio = _ink(out) / _ink(x)
    assert np.all(np.abs(ratio - 1) < 0.10), ratio

    def col_com(part):
        return (part * np.arange(28)).sum(axis=(1, 2)) / part.sum(axis=(1, 2))

    top = col_com(out[:, :14]) - col_com(x[:, :14])
    bottom = col_com(out[:, 14:]) - col_com(x[:, 14:])
    assert np.all(top * bottom < 0)
    assert np.all(np.abs(top - bottom) > 1.5)
    # Both directions occur (random sign).
    assert np.any(top > 0) and np.any(top < 0)


def test_rotate_is_a_rotation_by_0_4_rad_about_the_centre(mnist_digits):
    out = corrupt(mnist_digits, "rotate", SEED).astype(np.float64)
    ratio = _ink(out) / _ink(mnist_digits)
    assert np.all(np.abs(ratio - 1) < 0.10), ratio
    x = mnist_digits / 255.0
    degrees = np.rad2deg(0.4)
    errors = []
    for sign in (1, -1):
        reference = np.stack(
            [ndimage.rotate(image, sign * degrees, reshape=False, order=1) for image in x]
        )
        errors.append(np.abs(out - np.rint(np.clip(reference, 0, 1) * 255)).mean(axis=(1, 2)))
    errors = np.array(errors)
    assert np.all(errors.min(axis=0) < 0.5), errors.min(axis=0)
    assert np.all(errors.max(axis=0) > 5)  # and it is clearly not the other direction
    assert len(set(errors.argmin(axis=0).tolist())) == 2  # both signs occur


def test_scale_shrinks_to_70_percent_about_the_centre(mnist_digits):
    out = corrupt(mnist_digits, "scale", SEED)
    ratio = _ink(out) / _ink(mnist_digits)
    assert np.all(np.abs(ratio - 0.49) < 0.06), ratio
    before = _centre_of_mass(mnist_digits) - 13.5
    after = _centre_of_mass(out) - 13.5
    np.testing.assert_allclose(after, 0.7 * before, atol=0.25)
    # Shrunk about the centre: the ink's bounding box is about 70 % as wide.
    for image, small in zip(mnist_digits[:10], out[:10]):
        cols = np.flatnonzero(image.any(axis=0))
        small_cols = np.flatnonzero(small.any(axis=0))
        assert small_cols.size <= 0.7 * cols.size + 2


def test_brightness_adds_half(mnist_digits):
    out = corrupt(mnist_digits, "brightness", SEED).astype(np.int64)
    x = mnist_digits.astype(np.int64)
    room = x + 128 <= 255
    assert set(np.unique(out[room] - x[room]).tolist()) <= {127, 128}
    assert np.all(out[~room] == 255)
    assert abs(out[room].mean() - x[room].mean() - 127.5) < 0.5


def test_translate_moves_by_3_px_in_x_and_y(mnist_digits):
    out = corrupt(mnist_digits, "translate", SEED)
    # Digits with at least 3 empty rows and columns at every border are not clipped.
    margin = np.array([
        not (image[:3].any() or image[-3:].any() or image[:, :3].any() or image[:, -3:].any())
        for image in mnist_digits
    ])
    assert margin.sum() >= 25
    shift = _centre_of_mass(out[margin]) - _centre_of_mass(mnist_digits[margin])
    assert np.all(np.abs(np.abs(shift) - 3) < 0.5), shift
    # Exactly a zero-filled integer shift, with each sign occurring.
    for image, moved, (dy, dx) in zip(mnist_digits[margin], out[margin], np.rint(shift)):
        expected = np.roll(image, (int(dy), int(dx)), axis=(0, 1))
        np.testing.assert_array_equal(moved, expected)
    assert len({tuple(s) for s in np.sign(np.rint(shift)).astype(int).tolist()}) >= 3


def test_stripe_inverts_columns_0_to_6_and_21_to_27(mnist_digits):
    out = corrupt(mnist_digits, "stripe", SEED)
    inverted = np.r_[0:7, 21:28]
    np.testing.assert_array_equal(out[:, :, inverted], 255 - mnist_digits[:, :, inverted])
    np.testing.assert_array_equal(out[:, :, 7:21], mnist_digits[:, :, 7:21])


def test_fog_raises_the_background_and_follows_its_formula(mnist_digits):
    out = corrupt(mnist_digits, "fog", SEED).astype(np.float64) / 255
    x = mnist_digits / 255.0
    background = mnist_digits == 0
    per_image = np.array([o[b].mean() for o, b in zip(out, background)])
    assert np.all(per_image > 5 / 255) and out[background].mean() > 40 / 255
    # x' = (x + 3 fog) * m / (m + 3) with fog in [0, 1] and m = max(x); dimmed digits
    # (m = 0.5) check the scaling by m.
    dim = mnist_digits // 2
    for digits, result in ((mnist_digits, out), (dim, corrupt(dim, "fog", SEED) / 255)):
        x_ = digits / 255.0
        m = x_.max(axis=(1, 2), keepdims=True)
        low, high = x_ * m / (m + 3), (x_ + 3) * m / (m + 3)
        tolerance = 0.6 / 255
        assert np.all(result >= low - tolerance) and np.all(result <= high + tolerance)
    # The fog is spatially smooth: neighbouring background pixels differ little.
    haze = out - x * m / (m + 3)
    assert np.abs(np.diff(haze, axis=2))[background[:, :, 1:] & background[:, :, :-1]].mean() < 0.05


def test_plasma_fractal_is_normalised_smooth_and_seeded():
    a = C.plasma_fractal(np.random.default_rng(0))
    assert a.shape == (256, 256)
    assert a.min() == 0.0 and a.max() == 1.0
    assert a.std() > 0.05
    assert np.abs(np.diff(a, axis=0)).mean() < 0.03
    np.testing.assert_array_equal(a, C.plasma_fractal(np.random.default_rng(0)))
    assert not np.array_equal(a, C.plasma_fractal(np.random.default_rng(1)))
    with pytest.raises(GonomalyError):
        C.plasma_fractal(np.random.default_rng(0), mapsize=100)


def test_spatter_paints_mud_of_value_63(mnist_digits):
    out = corrupt(mnist_digits, "spatter", SEED).astype(np.int64)
    x = mnist_digits.astype(np.int64)
    # x' = x (1 - m) + 63 m: every pixel lies between its old value and 63.
    assert np.all(out >= np.minimum(x, 63) - 1) and np.all(out <= np.maximum(x, 63) + 1)
    # Masked background pixels get 63 m with m in [0.8, 1]: values 50..63.
    mud = (x == 0) & (out != 0)
    assert mud.sum() > 100
    assert out[mud].min() >= 50 and out[mud].max() == 63
    # The mud comes in blobs, not single pixels.
    labels, count = ndimage.label(mud)
    sizes = ndimage.sum_labels(mud, labels, range(1, count + 1))
    assert np.median(sizes) >= 3


def test_dotted_line_adds_dashes_with_gaps(mnist_digits):
    out = corrupt(mnist_digits, "dotted_line", SEED)
    assert np.all(out >= mnist_digits)
    assert np.all(_ink(out) > _ink(mnist_digits))
    gaps = np.r_[0:2, 4:6, 8:10, 12:14, 16:18, 20:22, 24:26, 27]
    dashes = np.setdiff1d(np.arange(28), gaps)
    np.testing.assert_array_equal(out[:, :, gaps], mnist_digits[:, :, gaps])
    # The dashes are drawn: in each image (nearly) every dash column gains ink; a dash can
    # only vanish where it crosses a saturated stroke.
    gained = (out > mnist_digits)[:, :, dashes].any(axis=1)
    assert np.all(gained.sum(axis=1) >= len(dashes) - 2), gained.sum(axis=1)
    assert gained.mean() > 0.95
    # The line is thin: at most ~3 rows per column.
    assert (out > mnist_digits)[:, :, dashes].sum(axis=1).max() <= 3


def test_zigzag_adds_a_zigzag(mnist_digits):
    out = corrupt(mnist_digits, "zigzag", SEED).astype(np.float64)
    x = mnist_digits.astype(np.float64)
    added = out - x
    assert np.all(added >= 0)
    assert np.all(_ink(out) > _ink(x))
    # Drawn only between columns 2 and 25.
    outside = np.r_[0:2, 26:28]
    np.testing.assert_array_equal(out[:, :, outside], x[:, :, outside])
    rows = np.arange(28)[:, None]
    turns = []
    for a in added:
        weight = a.sum(axis=0)
        cols = np.flatnonzero(weight > 0)
        # It starts at column 2 (at a row inside the image); its far end may leave the image.
        assert cols.min() == 2 and cols.size >= 10
        centre = (a * rows).sum(axis=0)[cols] / weight[cols]
        step = np.diff(centre)
        direction = np.sign(step[np.abs(step) > 0.3])
        turns.append(int(np.sum(np.diff(direction) != 0)))
    # Vertices every 4 px over 23 px: about 5 changes of direction; a line would have 0.
    assert np.median(turns) >= 4, turns


BLANK = np.zeros((1, 28, 28), np.uint8)
MANY_SEEDS = range(1000)


def test_zigzag_covers_columns_2_to_25():
    drawn = np.stack([corrupt(BLANK, "zigzag", seed)[0] for seed in MANY_SEEDS]) > 0
    columns = drawn.any(axis=1)  # (seeds, 28): the columns each zigzag reaches
    assert np.all(columns[:, 2]) and not columns[:, :2].any() and not columns[:, 26:].any()
    # A zigzag that stays inside the image (start row 7..20) is drawn in every column from 2 to
    # its far end: column 25 when the baseline rises, 24 when it is level or falls.
    rows = np.array([C.zigzag_rows(C.image_rng(BLANK[0], "zigzag", seed)) for seed in MANY_SEEDS])
    inside = (rows[:, 0] >= 7) & (rows[:, 0] <= 20)
    assert inside.sum() > 400
    last = 27 - np.argmax(columns[:, ::-1], axis=1)
    np.testing.assert_array_equal(last[inside], np.where(rows[inside, 1] > rows[inside, 0], 25, 24))
    assert all(columns[k, 2 : last[k] + 1].all() for k in np.flatnonzero(inside))


def test_zigzag_vertices_end_as_the_published_generator():
    # A level baseline (row 10, length 23): vertices at 2, 6, ..., 22 alternating +-2 rows; the
    # last one, at column 25, is offset by the previous offset / (2 * (23 - 20)) = -2 / 6.
    cols, rows = C.zigzag_vertices(10, 10)
    np.testing.assert_allclose(cols, [2, 4, 8, 12, 16, 20, 24, 25])
    np.testing.assert_allclose(rows, [10, 12, 8, 12, 8, 12, 8, 10 - 1 / 3])
    # A tilted baseline ends at column 25 along it, the same small offset across it.
    cols, rows = C.zigzag_vertices(3, 7)
    length = np.hypot(23, 4)
    offset = -2 / (2 * (length - 20))
    np.testing.assert_allclose(cols[-1], 2 + 23 - offset * 4 / length)
    np.testing.assert_allclose(rows[-1], 7 + offset * 23 / length)


def test_zigzag_starts_at_its_drawn_row():
    for seed in range(50):
        start, _ = C.zigzag_rows(C.image_rng(BLANK[0], "zigzag", seed))
        out = corrupt(BLANK, "zigzag", seed)[0]
        assert out[start, 2] == 255 and np.argmax(out[:, 2]) == start


def test_random_rows_stop_at_26_and_the_zigzag_offset_at_plus_4():
    rngs = [np.random.default_rng(seed) for seed in range(2000)]
    line_rows = np.array([C.dotted_line_rows(rng) for rng in rngs])
    assert line_rows.min() == 0 and line_rows.max() == 26
    zigzag_rows = np.array([C.zigzag_rows(rng) for rng in rngs])
    assert zigzag_rows[:, 0].min() == 0 and zigzag_rows[:, 0].max() == 26
    offsets = zigzag_rows[:, 1] - zigzag_rows[:, 0]
    assert set(offsets.tolist()) == set(range(-5, 5))
    # Seen in the images: a dotted line's brightest row in column 2 is never the last row.
    brightest = [np.argmax(corrupt(BLANK, "dotted_line", seed)[0, :, 2]) for seed in MANY_SEEDS]
    assert max(brightest) == 26


def test_canny_edges_are_binary_outlines(mnist_digits):
    out = corrupt(mnist_digits, "canny_edges", SEED)
    assert set(np.unique(out).tolist()) == {0, 255}
    reference = np.stack([feature.canny(image / 255.0, sigma=1) for image in mnist_digits])
    np.testing.assert_array_equal(out == 255, reference)
    assert np.all((out > 0).sum(axis=(1, 2)) > 10)
    # Edges lie on the digit's outline: within a pixel of ink.
    distance_to_ink = np.stack(
        [ndimage.distance_transform_edt(image == 0) for image in mnist_digits]
    )
    assert distance_to_ink[out > 0].max() <= 1.5
    # The stroke interiors are not edges: far fewer edge pixels than ink pixels of a thick digit.
    assert np.mean((out > 0).sum(axis=(1, 2)) < (mnist_digits > 0).sum(axis=(1, 2))) > 0.8


def test_corruption_selectors_name_the_protocol_and_all():
    from gonomaly.workflow.tools import corruption_names

    assert corruption_names("protocol") == list(PROTOCOL_CORRUPTIONS)
    assert corruption_names("all") == list(ALL_CORRUPTIONS)
    assert corruption_names("fog, stripe") == ["fog", "stripe"]
    with pytest.raises(GonomalyError, match="unknown seed"):
        corruption_names("seed")
