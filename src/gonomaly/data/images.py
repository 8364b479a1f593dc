"""Reading image files (PNG, JPEG, ...) for scoring: one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gonomaly.errors import GonomalyError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def collect_image_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given, and image files found (recursively, sorted) in the folders given."""
    if not paths:
        raise GonomalyError("no image paths given")
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise GonomalyError(f"{path}: folder has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found += files
        elif path.exists():
            found.append(path)
        else:
            raise GonomalyError(f"{path}: no such file or folder")
    return found


def read_image(path: str | Path, image_shape: tuple[int, int, int]) -> np.ndarray:
    """Read one image as float32 (C, H, W) in [0, 1], matching the model's channels and size.

    Grey files feed an RGB model by repetition; colour files feed a grey model only when their
    channels are equal (a grey image saved as RGB); any other mismatch is refused.
    """
    path = Path(path)
    channels, height, width = image_shape
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                array = np.asarray(image, dtype=np.float64)
                top = 65535.0 if mode.startswith("I") and array.max() > 255 else 255.0
                array = (array / top)[..., None]
            else:
                converted = image.convert("L" if mode in ("L", "1", "LA") else "RGB")
                array = np.asarray(converted, dtype=np.float64) / 255.0
                if array.ndim == 2:
                    array = array[..., None]
    except FileNotFoundError:
        raise GonomalyError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise GonomalyError(f"{path}: cannot read image ({exc})") from None
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
            raise GonomalyError(f"{path}: colour image, the model expects {channels} channel(s)")
    return np.clip(array, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32)
