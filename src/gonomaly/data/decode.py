"""Decoding image files at the training size (MVTec categories, folders), and one file the same
way for scoring: images bilinear with anti-aliasing, masks nearest-neighbour so they stay binary."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from gonomaly.data.arrays import unit_float
from gonomaly.data.images import DEFAULT_MAX_PIXELS, cannot_read_image, image_source
from gonomaly.errors import GonomalyError

GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N")
WIDE_GREY_MODES = GREY_MODES[2:]  # 16- and 32-bit greyscale, scaled from 0-65535


def open_image(path: Path) -> Image.Image:
    """A decoded Pillow image, or one clear error naming the file."""
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise GonomalyError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on malformed files
        raise cannot_read_image(path, exc) from None


def is_grey(path: Path) -> bool:
    """Whether a file holds a greyscale image, from its header alone."""
    try:
        with Image.open(path) as image:
            return image.mode in GREY_MODES
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on malformed files
        raise cannot_read_image(path, exc) from None


def decode_resized(path: Path, size: int, channels: int,
                   expect: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 (C, S, S) and the original (width, height); with ``expect`` (its image's size) the
    file is a mask: uint8 (S, S), 1 = anomalous."""
    image = open_image(path)
    if expect is not None and image.size != expect:
        raise GonomalyError(f"{path}: mask is {image.size[0]}x{image.size[1]}, its image "
                            f"{expect[0]}x{expect[1]}")
    original = image.size
    if expect is not None:  # a mask: nearest-neighbour keeps it binary
        mask = image.convert("L").resize((size, size), Image.NEAREST)
        return (np.asarray(mask) > 127).astype(np.uint8), original
    return resize_image(image, size, channels), original


def resize_image(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """A decoded image as uint8 (C, S, S): 16-bit grey scaled from 0-65535, then bilinear with
    anti-aliasing."""
    if image.mode in WIDE_GREY_MODES:
        image = Image.fromarray((np.asarray(image, np.float64) / 65535 * 255).astype(np.uint8))
    array = resize_square(image.convert("L" if channels == 1 else "RGB"), size)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def resize_square(image: Image.Image, size: int) -> np.ndarray:
    """A decoded image as uint8 (size, size) or (size, size, 3): shrunk by an integer factor
    first (box filter, fast), then resized with Pillow's anti-aliased bilinear filter."""
    factor = max(1, min(image.size) // (2 * size))
    if factor > 1:
        image = image.reduce(factor)
    return np.asarray(image.resize((size, size), Image.BILINEAR), np.uint8)


def read_resized(source: str | Path | bytes | BinaryIO, image_shape: tuple[int, int, int], *,
                 max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """One image resized as training resized its images: float32 (C, S, S) in [0, 1].

    ``source`` and ``name`` as ``read_image`` takes them (a path, the file's bytes or a binary
    file object; the name messages start with). An image of more than ``max_pixels`` pixels is
    refused from its header, before decoding; a float image with NaN or inf pixels is refused."""
    source, path = image_source(source, name)
    channels, size, _ = image_shape
    try:
        with Image.open(source) as image:  # the size from the header, before decoding
            if image.size[0] * image.size[1] > max_pixels:
                raise GonomalyError(f"{path}: image is {image.size[0]}x{image.size[1]}, above the "
                                    f"limit of {max_pixels} pixels (--max-pixels)")
            image.load()
            if image.mode == "F" and not np.isfinite(np.asarray(image)).all():
                raise GonomalyError(f"{path}: image contains NaN or inf values")
            array = resize_image(image, size, channels)
    except GonomalyError:
        raise
    except FileNotFoundError:
        raise GonomalyError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on malformed files
        raise cannot_read_image(path, exc) from None
    return unit_float(array)
