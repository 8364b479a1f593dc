"""Awkward image files at scoring, each generated here from a real digit: NaN/inf pixels,
16-bit PNGs, palettes, transparency, CMYK JPEGs, EXIF rotation, huge images, grey and colour."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gonomaly.data.images import read_image
from gonomaly.errors import GonomalyError

GREY, RGB = (1, 28, 28), (3, 28, 28)


@pytest.fixture(scope="module")
def digit(mnist_digits):
    return mnist_digits[0]


def test_nan_and_inf_pixels_are_refused_naming_the_file(tmp_path, digit):
    for name, value in (("nan.tiff", np.nan), ("inf.tiff", np.inf), ("neginf.tiff", -np.inf)):
        pixels = digit.astype(np.float32)
        pixels[3, 4] = value
        Image.fromarray(pixels, mode="F").save(tmp_path / name)
        with pytest.raises(GonomalyError, match=rf"{name}: image contains NaN or inf"):
            read_image(tmp_path / name, GREY)


def test_16_bit_png_scales_from_0_65535(tmp_path, digit):
    wide = digit.astype(np.uint16) * 257  # 0..65535
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode == "I;16"
    np.testing.assert_allclose(read_image(tmp_path / "wide.png", GREY)[0], digit / 255.0, atol=1e-6)
    # A dark 16-bit image (all values <= 255) is still 16-bit: the old reader divided it by 255.
    dark = Image.new("I;16", (28, 28))
    dark.frombytes((digit.astype("<u2")).tobytes(), "raw", "I;16")
    dark.save(tmp_path / "dark.png")
    np.testing.assert_allclose(read_image(tmp_path / "dark.png", GREY)[0], digit / 65535.0, atol=1e-7)
    rgb = read_image(tmp_path / "wide.png", RGB)
    assert rgb.shape == RGB and np.array_equal(rgb[0], rgb[2])


def test_palette_images(tmp_path, digit):
    Image.fromarray(digit).convert("P").save(tmp_path / "grey-palette.png")
    assert Image.open(tmp_path / "grey-palette.png").mode == "P"
    np.testing.assert_allclose(read_image(tmp_path / "grey-palette.png", GREY)[0], digit / 255.0, atol=1e-6)
    colour = Image.fromarray(digit).convert("P")
    colour.putpalette([v for i in range(256) for v in (i, 0, 255 - i)])
    colour.save(tmp_path / "colour-palette.png")
    with pytest.raises(GonomalyError, match="colour-palette.png: colour image"):
        read_image(tmp_path / "colour-palette.png", GREY)
    rgb = read_image(tmp_path / "colour-palette.png", RGB)
    np.testing.assert_allclose(rgb[0], digit / 255.0, atol=1e-6)
    np.testing.assert_allclose(rgb[2], 1 - digit / 255.0, atol=1e-6)


def test_alpha_is_composited_over_black(tmp_path, digit):
    alpha = np.full((28, 28), 255, np.uint8)
    alpha[:, :14] = 0  # left half fully transparent, whatever colour it stores
    white = np.full((28, 28), 255, np.uint8)
    Image.fromarray(np.stack([white, white, white, alpha], -1), "RGBA").save(tmp_path / "rgba.png")
    expected = np.where(alpha == 255, 1.0, 0.0)
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png", GREY)[0], expected)
    Image.fromarray(np.stack([digit, np.full_like(digit, 128)], -1), "LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png", GREY)[0],
                               (digit / 255.0) * (128 / 255.0), atol=1e-6)
    palette = Image.fromarray(digit).convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])  # the background index
    palette.save(tmp_path / "p-trns.png", transparency=palette.info["transparency"])
    got = read_image(tmp_path / "p-trns.png", GREY)[0]
    assert got[0, 0] == 0 and np.allclose(got[digit > 0], digit[digit > 0] / 255.0, atol=1e-6)


def test_cmyk_jpeg_becomes_rgb(tmp_path, digit):
    cmyk = Image.fromarray(np.stack([digit, np.zeros_like(digit), 255 - digit, np.zeros_like(digit)], -1),
                           "CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    expected = np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(read_image(tmp_path / "cmyk.jpg", RGB), expected, atol=1e-6)
    with pytest.raises(GonomalyError, match="cmyk.jpg: colour image"):
        read_image(tmp_path / "cmyk.jpg", GREY)
    # Black ink only is grey: accepted by a grey model.
    k_only = np.stack([np.zeros_like(digit)] * 3 + [255 - digit], -1)
    Image.fromarray(k_only, "CMYK").save(tmp_path / "k.jpg", quality=100)
    assert read_image(tmp_path / "k.jpg", GREY).shape == GREY


@pytest.mark.parametrize("orientation, turn", [(3, lambda a: np.rot90(a, 2)),
                                               (6, lambda a: np.rot90(a, -1)),
                                               (8, lambda a: np.rot90(a, 1))])
def test_exif_orientation_is_applied(tmp_path, digit, orientation, turn):
    wide = np.concatenate([digit, np.zeros((28, 4), np.uint8)], 1)  # 32 wide, 28 high
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(wide).save(tmp_path / "photo.png", exif=exif)
    upright = turn(wide)
    got = read_image(tmp_path / "photo.png", (1, *upright.shape))[0]
    np.testing.assert_allclose(got, upright / 255.0, atol=1e-6)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (and whose data is one empty chunk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_huge_images_are_refused_from_the_header(tmp_path, digit):
    limit = Image.MAX_IMAGE_PIXELS
    for name, (w, h) in {"huge.png": (60_000, 60_000), "big.png": (8_000, 8_000)}.items():
        (tmp_path / name).write_bytes(_png_header_only(w, h))
        with pytest.raises(GonomalyError, match=rf"{name}: .*(--max-pixels)"):
            read_image(tmp_path / name, GREY)
    Image.fromarray(digit).save(tmp_path / "digit.png")
    with pytest.raises(GonomalyError, match=r"digit.png: .*784.*above the limit of 700 pixels"):
        read_image(tmp_path / "digit.png", GREY, max_pixels=700)
    assert read_image(tmp_path / "digit.png", GREY, max_pixels=784).shape == GREY
    assert Image.MAX_IMAGE_PIXELS == limit  # restored


def test_grey_and_colour_against_the_model(tmp_path, digit):
    Image.fromarray(digit).save(tmp_path / "grey.png")
    rgb = read_image(tmp_path / "grey.png", RGB)
    assert np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[1], rgb[2])  # replicated
    Image.fromarray(np.stack([digit] * 3, -1)).save(tmp_path / "grey-as-rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "grey-as-rgb.png", GREY),
                                  read_image(tmp_path / "grey.png", GREY))
    Image.fromarray(np.stack([digit, digit // 2, digit], -1)).save(tmp_path / "colour.png")
    with pytest.raises(GonomalyError, match=r"colour.png: colour image, the model expects 1 channel"
                                            r".*convert it to greyscale first"):
        read_image(tmp_path / "colour.png", GREY)


def test_score_command_max_pixels_and_awkward_files(tmp_path, mnist_digits, capsys):
    from gonomaly import GONDetector
    from gonomaly.cli import main

    run = GONDetector(latent_dim=8, width=8, epochs=1, batch_size=25, seed=0).fit(mnist_digits).save(
        tmp_path / "run")
    Image.fromarray(mnist_digits[1].astype(np.uint16) * 257).save(tmp_path / "a16.png")
    Image.fromarray(np.stack([mnist_digits[2]] * 3 + [np.full((28, 28), 255, np.uint8)], -1)).save(
        tmp_path / "b-rgba.png")
    Image.fromarray(mnist_digits[3]).convert("P").save(tmp_path / "c-palette.png")
    main(["-q", "score", str(run), str(tmp_path / "a16.png"), str(tmp_path / "b-rgba.png"),
          str(tmp_path / "c-palette.png")])
    assert len(capsys.readouterr().out.splitlines()) == 3
    with pytest.raises(SystemExit) as exit_:
        main(["-q", "score", str(run), str(tmp_path / "a16.png"), "--max-pixels", "500"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "a16.png" in err and "--max-pixels" in err
    assert len(err.strip().splitlines()) == 1


def test_threads_reading_with_other_limits_leave_pillows_limit_alone(tmp_path):
    """The server decodes in a thread pool: concurrent reads must not leak a limit."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(path)
    limit = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: read_image(path, (1, 28, 28), max_pixels=1000 + i), range(400)))
    assert Image.MAX_IMAGE_PIXELS == limit
