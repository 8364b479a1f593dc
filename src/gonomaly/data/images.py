"""Reading image files (PNG, JPEG, ...) for scoring: one clear error per bad file."""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from gonomaly.errors import GonomalyError

DEFAULT_MAX_PIXELS = 50_000_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def collect_image_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given, and image files found (recursively, sorted) in the folders given.

    Symbolic links to folders are not followed inside a folder; a path given directly must be
    a regular file (a FIFO or a device would block or never end)."""
    if not paths:
        raise GonomalyError("no image paths given")
    found: list[Path] = []
    for path in map(Path, paths):
        try:
            if path.is_dir():
                files = sorted(p for p in path.rglob("*")
                               if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
                if not files:
                    raise GonomalyError(f"{path}: folder has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
                found += files
            elif path.is_file():
                found.append(path)
            elif path.exists():
                raise GonomalyError(f"{path}: not a regular file")
            else:
                raise GonomalyError(f"{path}: no such file or folder")
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte, an unreadable folder
            raise GonomalyError(f"{str(path)[:200]!r}: cannot read path ({exc})") from None
    return found



def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (not recursive), sorted; none if it is no folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def cannot_read_image(path: Path, exc: Exception) -> GonomalyError:
    """The one-line error for a file that Pillow cannot open or decode (it raises many types)."""
    message = " ".join(str(exc).split())[:300]
    return GonomalyError(f"{path}: cannot read image ({message or type(exc).__name__})")

# Pillow's modes for 16-bit greyscale; 32-bit "I" (how some formats hold them) is read alike.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
# Pillow's pixel limit and the warning filters are process-wide: images read in several threads
# (the server's decoding pool) would restore each other's settings in the wrong order.
_PIXEL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pixel_limit(max_pixels: int):
    """Pillow's decompression-bomb limit: off while ``Image.open`` reads the header (our own
    check, with one message, comes first), then ``max_pixels`` for decoding, its warning an
    error. Yields the function that switches it on. The previous limit is restored."""
    def enforce() -> None:
        Image.MAX_IMAGE_PIXELS = max_pixels

    with _PIXEL_LIMIT_LOCK, warnings.catch_warnings():
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        # Pillow warns about metadata it skips (corrupt EXIF, ...): the image itself either
        # decodes or raises. Its decompression-bomb warning becomes an error.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield enforce
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _pixels(image: Image.Image) -> np.ndarray:
    """float64 (H, W, C) in [0, 1] from any Pillow mode (see ``read_image``)."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        return (np.asarray(image, dtype=np.float64) / 65535.0)[..., None]
    if mode == "F":
        return (np.asarray(image, dtype=np.float64) / 255.0)[..., None]
    if mode in ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
        return rgba[..., :3] * rgba[..., 3:]  # composited over black
    converted = image.convert("L" if mode in ("L", "1") else "RGB")
    array = np.asarray(converted, dtype=np.float64) / 255.0
    return array[..., None] if array.ndim == 2 else array


def image_source(source: str | Path | bytes | BinaryIO, name: str | None = None) -> tuple[Path | BinaryIO, str]:
    """What ``Image.open`` takes for a path, the file's bytes or a binary file object, and the
    name that messages start with: ``name``, else the path, the file object's ``name``, or
    ``<bytes>``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source, default_name = io.BytesIO(source), "<bytes>"
    elif hasattr(source, "read"):
        default_name = str(getattr(source, "name", None) or "<file>")
    else:
        source = Path(source)
        default_name = str(source)
    return source, default_name if name is None else name


def read_image(source: str | Path | bytes | BinaryIO, image_shape: tuple[int, int, int], *,
               max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """Read one image as float32 (C, H, W) in [0, 1], matching the model's channels and size.

    ``source`` is a path, the file's bytes, or a binary file object (an upload); messages
    start with ``name``, by default the path, the file object's ``name``, or ``<bytes>``.

    - 16-bit greyscale (PNG, TIFF: Pillow's ``I;16`` modes, and 32-bit ``I``) is scaled from
      0-65535; 8-bit from 0-255; float (``F``) images are divided by 255 as before.
    - Palette images become RGB (a grey palette then counts as grey); CMYK becomes RGB.
    - Transparency (RGBA, LA, a palette or a tRNS colour) is composited over black: a
      transparent pixel is background, as in the dark digits of MNIST.
    - The EXIF orientation is applied (``ImageOps.exif_transpose``) before the size check.
    - An image of more than ``max_pixels`` pixels is refused from its header, before decoding.
    - NaN or inf pixels are refused, naming the file.
    - Grey files feed an RGB model by repetition; colour files feed a grey model only when
      their channels are equal (a grey image saved as RGB). A true colour image is refused for
      a grey model: gonomaly does not guess a colour-to-grey conversion.
    """
    source, path = image_source(source, name)
    channels, height, width = image_shape
    try:
        with _pixel_limit(max_pixels) as enforce_limit, Image.open(source) as image:
            w, h = image.size  # from the header: nothing is decoded yet
            if w * h > max_pixels:
                raise GonomalyError(f"{path}: image is {w}x{h} ({w * h} pixels), above the limit "
                                    f"of {max_pixels} pixels (--max-pixels)")
            enforce_limit()
            array = _pixels(ImageOps.exif_transpose(image))
    except GonomalyError:
        raise
    except FileNotFoundError:
        raise GonomalyError(f"{path}: file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise GonomalyError(f"{path}: image too large to decode safely ({exc}; see --max-pixels)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on malformed files
        message = " ".join(str(exc).replace(f" {source!r}", "").split())[:300]  # no "<_io.BytesIO ...>"
        raise GonomalyError(f"{path}: cannot read image ({message or type(exc).__name__})") from None
    if not np.isfinite(array).all():
        raise GonomalyError(f"{path}: image contains NaN or inf values")
    if array.shape[:2] != (height, width):
        raise GonomalyError(
            f"{path}: image is {array.shape[1]}x{array.shape[0]}, the model expects {width}x{height}"
        )
    if array.shape[2] != channels:
        if channels == 3:
            array = np.repeat(array, 3, axis=2)
        elif np.allclose(array, array[..., :1]):
            array = array[..., :1]
        else:
            raise GonomalyError(f"{path}: colour image, the model expects {channels} channel(s) "
                                f"(grey); convert it to greyscale first")
    return np.clip(array, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32)
