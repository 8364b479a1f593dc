"""atheris target: gonomaly.data.images.read_image on arbitrary files.

Seeds: a real MNIST digit as PNG (grey, RGB, RGBA, palette, 16-bit), JPEG (grey, CMYK), BMP,
TIFF (8-bit, float), WebP and GIF. The first input byte picks the model's channels (1 or 3) and
the pixel limit (50 megapixels or 1,000 pixels); the rest is the file. Every input must give a
GonomalyError or a float32 (C, 28, 28) array in [0, 1].

    python benchmarks/fuzz/fuzz_image.py -runs=50000
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fuzz_argv, mnist_digits, scratch_dir  # noqa: E402

with atheris.instrument_imports(include=["gonomaly", "PIL"]):
    import numpy as np
    from PIL import Image

    from gonomaly.data.images import read_image
    from gonomaly.errors import GonomalyError

    Image.init()  # import every format plugin now, so that they are instrumented too

PATH = scratch_dir("gonomaly-fuzz-image-") / "input"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    shape = (1 + 2 * (data[0] & 1), 28, 28)
    max_pixels = 1_000 if data[0] & 2 else 50_000_000
    PATH.write_bytes(data[1:])
    try:
        array = read_image(PATH, shape, max_pixels=max_pixels)
    except GonomalyError:
        return
    assert array.shape == shape and array.dtype == np.float32
    assert np.isfinite(array).all() and 0 <= array.min() and array.max() <= 1


def seeds() -> list[bytes]:
    digit = mnist_digits(1)[0]
    grey = Image.fromarray(digit)
    rgb = Image.fromarray(np.stack([digit, digit // 2, 255 - digit], -1))
    out = []
    for image, fmt, options in [
        (grey, "PNG", {}), (rgb, "PNG", {}), (rgb.convert("RGBA"), "PNG", {}),
        (grey.convert("P"), "PNG", {}), (Image.fromarray(digit.astype(np.uint16) * 257), "PNG", {}),
        (grey, "JPEG", {"quality": 90}), (rgb.convert("CMYK"), "JPEG", {}), (grey, "BMP", {}),
        (grey, "TIFF", {}), (Image.fromarray(digit.astype(np.float32)), "TIFF", {}),
        (rgb, "WEBP", {"lossless": True}), (grey, "GIF", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        out += [b"\x00" + buffer.getvalue(), b"\x01" + buffer.getvalue()]
    return out


if __name__ == "__main__":
    atheris.Setup(fuzz_argv("image", seeds()), test_one_input)
    atheris.Fuzz()
