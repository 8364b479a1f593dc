"""atheris target: gonomaly.data.idx.read_idx on arbitrary bytes, raw and gzip.

Every input must give a GonomalyError or a valid uint8 array; any other exception, or an RSS
above -rss_limit_mb (a header that makes the reader allocate what the file does not hold), is a
crash. The first input byte picks the layer: even = the bytes as a file, odd = the rest gzipped
(so that mutations reach the IDX parser behind a valid gzip stream).

    python benchmarks/fuzz/fuzz_idx.py -runs=100000
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fuzz_argv, mnist_digits, scratch_dir  # noqa: E402

with atheris.instrument_imports(include=["gonomaly"]):
    from gonomaly.data.idx import IMAGES_MAGIC, LABELS_MAGIC, MAX_BYTES, read_idx
    from gonomaly.errors import GonomalyError

PATH = scratch_dir("gonomaly-fuzz-idx-") / "input"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    PATH.write_bytes(gzip.compress(body, mtime=0) if data[0] & 1 else body)
    for magic in (IMAGES_MAGIC, LABELS_MAGIC):
        try:
            array = read_idx(PATH, magic)
        except GonomalyError:
            continue
        assert array.dtype.name == "uint8" and array.ndim == (3 if magic == IMAGES_MAGIC else 1)
        assert array.nbytes <= MAX_BYTES


def seeds() -> list[bytes]:
    digits = mnist_digits(3)
    images = struct.pack(">iiii", IMAGES_MAGIC, 3, 28, 28) + digits.tobytes()
    labels = struct.pack(">ii", LABELS_MAGIC, 3) + bytes([7, 2, 1])
    return [b"\x00" + images, b"\x01" + images, b"\x00" + labels, b"\x01" + labels,
            b"\x00" + gzip.compress(images, mtime=0), b"\x00" + struct.pack(">iiii", IMAGES_MAGIC, 0, 28, 28)]


if __name__ == "__main__":
    atheris.Setup(fuzz_argv("idx", seeds()), test_one_input)
    atheris.Fuzz()
