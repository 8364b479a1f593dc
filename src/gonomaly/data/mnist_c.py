"""MNIST-C in its published layout: ``ROOT/<corruption>/test_images.npy`` and ``test_labels.npy``.

gonomaly generates the corruptions itself (see ``corruptions``); this module writes them in that
layout for other tools, and reads the layout back, for users who have the published files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gonomaly.data.corruptions import IDENTITY, corrupt
from gonomaly.errors import GonomalyError
from gonomaly.io import atomic_write_bytes

IMAGES_FILE = "test_images.npy"
LABELS_FILE = "test_labels.npy"


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def export_mnist_c(images: np.ndarray, labels: np.ndarray, names: list[str], out: Path,
                   seed: int, fmt: str = "npy", progress=None) -> dict[str, np.ndarray]:
    """Write identity plus each corruption of ``images`` (uint8 N x 28 x 28) under ``out``.

    ``npy`` gives the published layout (images as N x 28 x 28 x 1 uint8, labels uint8); ``png``
    writes ``out/<corruption>/<index>_<label>.png``. Returns the corrupted arrays by name.
    """
    out = Path(out)
    generated: dict[str, np.ndarray] = {}
    for name in [IDENTITY, *[n for n in names if n != IDENTITY]]:
        corrupted = corrupt(images, name, seed)
        generated[name] = corrupted
        folder = out / name
        if fmt == "npy":
            atomic_write_bytes(folder / IMAGES_FILE, _npy_bytes(corrupted[..., None]))
            atomic_write_bytes(folder / LABELS_FILE, _npy_bytes(labels.astype(np.uint8)))
        elif fmt == "png":
            folder.mkdir(parents=True, exist_ok=True)
            for i, (image, label) in enumerate(zip(corrupted, labels)):
                Image.fromarray(image).save(folder / f"{i:05d}_{int(label)}.png")
        else:
            raise GonomalyError(f"unknown format '{fmt}' (use npy or png)")
        if progress is not None:
            progress(name)
    return generated


def read_mnist_c(root: str | Path, names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Clean (``identity``) test images and each named corruption, uint8 (N, 28, 28)."""
    root = Path(root)

    def read(name: str) -> np.ndarray:
        path = root / name / IMAGES_FILE
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise GonomalyError(f"{path}: not found (expected the MNIST-C layout ROOT/<corruption>/"
                                f"{IMAGES_FILE})") from None
        except (OSError, ValueError, EOFError) as exc:
            raise GonomalyError(f"{path}: cannot read ({exc})") from None
        if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[1:3] != (28, 28) \
                or array.size != len(array) * 784:
            raise GonomalyError(f"{path}: expected uint8 images (N, 28, 28[, 1]), "
                                f"got {array.dtype} {array.shape}")
        return array.reshape(-1, 28, 28)

    clean = read(IDENTITY)
    corrupted = {name: read(name) for name in names}
    for name, array in corrupted.items():
        if len(array) != len(clean):
            raise GonomalyError(f"{root / name / IMAGES_FILE}: {len(array)} images, "
                                f"identity has {len(clean)}")
    return clean, corrupted
