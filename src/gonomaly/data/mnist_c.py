"""MNIST-C: the SPEC kind ``mnist-c[:corruptions=fog,stripe][,n_train=N][,n_test=N][,root=DIR]``,
and the published layout: ``ROOT/<corruption>/test_images.npy`` and ``test_labels.npy``.

gonomaly generates the corruptions itself (see ``corruptions``); this module writes them in that
layout for other tools, and reads the layout back (``root=``), for users who have the published
files. The test set: the clean test digits (normal), then each corruption of them (anomalous).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from gonomaly.data.arrays import unit_float
from gonomaly.data.base import NORMAL_GROUP, DataBundle, DataSpec, ImageSet
from gonomaly.data.corruptions import ALL_CORRUPTIONS, IDENTITY, PROTOCOL_CORRUPTIONS, corrupt
from gonomaly.data.registry import DatasetKind, register
from gonomaly.data.sources import load_digits
from gonomaly.errors import GonomalyError
from gonomaly.io import atomic_write_bytes

log = logging.getLogger("gonomaly")

IMAGES_FILE = "test_images.npy"
LABELS_FILE = "test_labels.npy"
DEFAULT_N_TEST = 2000  # clean test digits, each also corrupted once per corruption


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


def _corruption_names(spec: DataSpec) -> list[str]:
    names = (spec.options["corruptions"].split(",") if "corruptions" in spec.options
             else list(PROTOCOL_CORRUPTIONS))
    unknown = [n for n in names if n not in ALL_CORRUPTIONS]
    if unknown:
        raise spec.error(f"unknown corruption(s) {', '.join(unknown)} "
                         f"(known: {', '.join(ALL_CORRUPTIONS)})")
    return names


def _labelled_test_set(clean: np.ndarray, corrupted: dict[str, np.ndarray], names: list[str],
                       n_test: int) -> ImageSet:
    parts = [clean] + [corrupted[n][:n_test] for n in names]
    group_names = [NORMAL_GROUP, *names]
    labels = np.concatenate([np.zeros(len(clean), np.int64)] + [np.ones(len(p), np.int64) for p in parts[1:]])
    groups = np.concatenate([np.full(len(p), g, dtype=object) for p, g in zip(parts, group_names)])
    ids = [f"{g}[{i}]" for p, g in zip(parts, group_names) for i in range(len(p))]
    return ImageSet(unit_float(np.concatenate(parts))[:, None], labels, groups, ids)


def load_mnist_c(spec: DataSpec, data_dir, seed: int, image_size: int | None) -> list[DataBundle]:
    """The one bundle of an MNIST-C SPEC: corruptions read from ``root=`` or generated with
    ``seed`` (``image_size`` is unused)."""
    digits = load_digits("mnist", data_dir)
    names = _corruption_names(spec)
    train_images = digits.train_images[: spec.int_option("n_train", None)]
    n_test = spec.int_option("n_test", DEFAULT_N_TEST)
    if "root" in spec.options:
        clean, corrupted = read_mnist_c(spec.options["root"], names)
        clean = clean[:n_test]
        source = f"{spec.options['root']} (MNIST-C files)"
    else:
        clean = digits.test_images[:n_test]
        corrupted = {name: corrupt(clean, name, seed) for name in names}
        source = f"{digits.source}, corruptions generated with seed {seed}"
    test = _labelled_test_set(clean, corrupted, names, n_test)
    log.info("mnist-c: %d clean + %d x %d corrupted test digits", len(clean), len(names), len(clean))
    return [DataBundle(spec.text, unit_float(train_images)[:, None], test, source,
                       {"kind": "mnist-c", "corruptions": names, "n_train": len(train_images),
                        "n_test_clean": len(clean)})]


register(DatasetKind("mnist-c", load_mnist_c, options=frozenset({"corruptions", "n_train", "n_test", "root"})))
