"""A validating reader for the IDX format of MNIST and Fashion-MNIST (.gz or raw)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from gonomaly.errors import GonomalyError

IMAGES_MAGIC = 2051  # uint8, 3 dimensions: n, rows, cols
LABELS_MAGIC = 2049  # uint8, 1 dimension: n
# Headers are checked against these before anything is allocated, so a corrupt header can never
# ask for gigabytes.
MAX_ITEMS = 10_000_000
MAX_SIDE = 4096
MAX_BYTES = 2 << 30


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as handle:
                return handle.read(MAX_BYTES + 1)
        return path.read_bytes()
    except FileNotFoundError:
        raise GonomalyError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise GonomalyError(f"{path}: cannot read IDX file ({exc})") from None


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file and check its magic number, dimensions and length."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise GonomalyError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    magic = struct.unpack(">i", data[:4])[0]
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise GonomalyError(
            f"{path}: not an IDX {kind} file (magic number {magic}, expected {expected_magic})"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise GonomalyError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}i", data[4:header_size])
    if dims[0] < 0 or dims[0] > MAX_ITEMS or any(d <= 0 or d > MAX_SIDE for d in dims[1:]):
        raise GonomalyError(f"{path}: implausible IDX dimensions {dims}")
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(data) - header_size
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise GonomalyError(
            f"{path}: IDX file {problem}: header {dims} needs {expected} bytes of data, found {actual}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def read_images(path: str | Path) -> np.ndarray:
    """uint8 array (n, rows, cols)."""
    return read_idx(path, IMAGES_MAGIC)


def read_labels(path: str | Path) -> np.ndarray:
    """uint8 array (n,)."""
    return read_idx(path, LABELS_MAGIC)
