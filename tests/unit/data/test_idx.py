import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from gonomaly.data.idx import read_images, read_labels
from gonomaly.errors import GonomalyError

MNIST = Path(os.environ.get("GONOMALY_DATA", "/nonexistent")) / "mnist"


def _write_idx(path: Path, magic: int, dims, payload: bytes, compress=False) -> Path:
    data = struct.pack(f">i{len(dims)}i", magic, *dims) + payload
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.skipif(not MNIST.is_dir(), reason="the full MNIST in ../shared/data is absent")
def test_real_mnist_files():
    images = read_images(MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_labels(MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.mark.parametrize("compress", [False, True])
def test_raw_and_gzip_give_the_same_array(tmp_path, compress):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8)
    path = _write_idx(tmp_path / "x", 2051, (2, 3, 4), pixels.tobytes(), compress)
    np.testing.assert_array_equal(read_images(path), pixels.reshape(2, 3, 4))


def test_truncated_file_names_the_file(tmp_path):
    path = _write_idx(tmp_path / "short.gz", 2051, (10, 28, 28), bytes(100), compress=True)
    with pytest.raises(GonomalyError, match=r"short\.gz: IDX file truncated"):
        read_images(path)


def test_truncated_gzip_stream(tmp_path):
    data = gzip.compress(struct.pack(">iiii", 2051, 10, 28, 28) + bytes(7840))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GonomalyError, match=r"cut\.gz"):
        read_images(path)


def test_wrong_magic_and_labels_for_images(tmp_path):
    labels = _write_idx(tmp_path / "labels", 2049, (5,), bytes(5))
    with pytest.raises(GonomalyError, match="magic number 2049, expected 2051"):
        read_images(labels)
    assert read_labels(labels).shape == (5,)


def test_trailing_bytes_and_empty_and_huge_header(tmp_path):
    with pytest.raises(GonomalyError, match="trailing bytes"):
        read_labels(_write_idx(tmp_path / "a", 2049, (5,), bytes(6)))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(GonomalyError, match="empty: truncated"):
        read_images(tmp_path / "empty")
    with pytest.raises(GonomalyError, match="implausible"):
        read_images(_write_idx(tmp_path / "huge", 2051, (2**30, 28, 28), b""))
    with pytest.raises(GonomalyError, match="not found"):
        read_images(tmp_path / "missing")
