"""A validating reader for the IDX format of MNIST and Fashion-MNIST (.gz or raw)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
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


CHUNK = 1 << 20


def _read_at_most(stream, limit: int) -> bytes:
    """Up to ``limit`` bytes, read in chunks: memory follows the data actually present, never
    the size a header claims (a gzip stream's length is unknown until it is decompressed)."""
    parts, size = [], 0
    while size < limit:
        part = stream.read(min(CHUNK, limit - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file and check its magic number, dimensions and length.

    The header is validated before the data is read, and no more than the header's (bounded)
    size plus one byte is ever read, so neither a corrupt header nor a gzip bomb can make the
    reader allocate more than ``MAX_BYTES``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            return _parse(path, stream, None if compressed else os.fstat(raw.fileno()).st_size,
                          expected_magic)
    except FileNotFoundError:
        raise GonomalyError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise GonomalyError(f"{path}: is a folder, not an IDX file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise GonomalyError(f"{path}: cannot read IDX file ({exc})") from None


def _parse(path: Path, stream, file_size: int | None, expected_magic: int) -> np.ndarray:
    head = _read_at_most(stream, 4)
    if len(head) < 4:
        raise GonomalyError(f"{path}: truncated IDX file ({len(head)} bytes, no header)")
    magic = struct.unpack(">i", head)[0]
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise GonomalyError(
            f"{path}: not an IDX {kind} file (magic number {magic}, expected {expected_magic})"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    rest = _read_at_most(stream, header_size - 4)
    if len(rest) < header_size - 4:
        raise GonomalyError(f"{path}: truncated IDX header ({4 + len(rest)} bytes)")
    dims = struct.unpack(f">{ndim}i", rest)
    expected = int(np.prod(dims, dtype=np.int64)) if all(d >= 0 for d in dims) else -1
    if dims[0] < 0 or dims[0] > MAX_ITEMS or any(d <= 0 or d > MAX_SIDE for d in dims[1:]) \
            or expected > MAX_BYTES:
        raise GonomalyError(f"{path}: implausible IDX dimensions {dims}")
    if file_size is not None:  # a plain file: check its size before reading anything
        actual = file_size - header_size
    else:
        data = _read_at_most(stream, expected + 1)
        actual = len(data)
        if actual > expected:  # count the trailing bytes without keeping them
            while actual <= MAX_BYTES and (part := stream.read(CHUNK)):
                actual += len(part)
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise GonomalyError(
            f"{path}: IDX file {problem}: header {dims} needs {expected} bytes of data, found {actual}"
        )
    if file_size is not None:
        data = _read_at_most(stream, expected)
        if len(data) != expected:
            raise GonomalyError(f"{path}: IDX file changed while being read")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def read_images(path: str | Path) -> np.ndarray:
    """uint8 array (n, rows, cols)."""
    return read_idx(path, IMAGES_MAGIC)


def read_labels(path: str | Path) -> np.ndarray:
    """uint8 array (n,)."""
    return read_idx(path, LABELS_MAGIC)
