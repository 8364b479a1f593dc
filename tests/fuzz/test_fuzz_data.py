"""Fuzzing the IDX reader, the image reader and the folder collection with hypothesis (bounded:
a few seconds each). Every malformed input must give a GonomalyError, never another exception,
and a header must never make a reader allocate more than the data actually present."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import struct
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gonomaly.data.idx import IMAGES_MAGIC, LABELS_MAGIC, MAX_BYTES, read_idx
from gonomaly.data.images import IMAGE_SUFFIXES, collect_image_paths, read_image
from gonomaly.errors import GonomalyError

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = Path(tempfile.mkdtemp(prefix="gonomaly-fuzz-"))
MiB = 1 << 20


@pytest.fixture(scope="module", autouse=True)
def _remove_scratch():
    yield
    shutil.rmtree(WORK, ignore_errors=True)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None, extra: bytes) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        if buffer:
            buffer[position % len(buffer)] = value
    if cut is not None:
        buffer = buffer[:cut % (len(buffer) + 1)]
    return bytes(buffer) + extra


mutations = st.tuples(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
                      st.none() | st.integers(0, 1 << 20), st.binary(max_size=16))


# -- IDX ---------------------------------------------------------------------------------------
@st.composite
def idx_files(draw):
    """Valid or nearly valid IDX files, raw or gzip, then mutated; or random bytes."""
    if draw(st.booleans()):
        data = draw(st.binary(max_size=512))
    else:
        magic = draw(st.sampled_from([IMAGES_MAGIC, LABELS_MAGIC]))
        ndim = magic & 0xFF
        dims = [draw(st.integers(0, 6))] + [draw(st.integers(1, 5)) for _ in range(ndim - 1)]
        if draw(st.booleans()):  # a header that lies about the size
            dims = [draw(st.integers(-2**31, 2**31 - 1)) for _ in range(ndim)]
        n = int(np.prod(dims)) if all(0 <= d < 100 for d in dims) else draw(st.integers(0, 64))
        data = struct.pack(f">i{ndim}i", magic, *dims) + draw(st.binary(min_size=n, max_size=n))
        data = _mutate(data, *draw(mutations)) if draw(st.booleans()) else data
    if draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
        data = _mutate(data, *draw(mutations)) if draw(st.booleans()) else data
    return data


def _check_idx(path: Path) -> None:
    for magic in (IMAGES_MAGIC, LABELS_MAGIC):
        try:
            array = read_idx(path, magic)
        except GonomalyError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            continue
        assert array.dtype == np.uint8 and array.ndim == (3 if magic == IMAGES_MAGIC else 1)
        assert array.nbytes <= MAX_BYTES


@FUZZ
@given(idx_files())
def test_idx_reader_fuzz(data):
    path = WORK / "fuzz.idx"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        _check_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB + 64 * len(data)  # data present, never the size a header claims


def test_idx_header_claims_and_gzip_bomb_stay_small(tmp_path):
    """A header claiming 10 million 4096x4096 images, a 2 GB claim in a 40-byte gzip, and
    64 MB of zeros behind a header for 10 digits: refused without allocating any of it."""
    cases = {
        "huge_dims": struct.pack(">iiii", IMAGES_MAGIC, 10_000_000, 4096, 4096),
        "gzip_claim": gzip.compress(struct.pack(">iiii", IMAGES_MAGIC, 2_000_000, 32, 32)),
        "bomb": gzip.compress(struct.pack(">iiii", IMAGES_MAGIC, 10, 28, 28) + bytes(64 * MiB)),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        tracemalloc.start()
        try:
            with pytest.raises(GonomalyError, match=name):
                read_idx(tmp_path / name, IMAGES_MAGIC)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 * MiB, (name, peak)  # the old reader held all 64 MB of the bomb


def test_corrupt_deflate_stream_is_a_gonomaly_error(tmp_path):
    """zlib.error is not an OSError: a damaged deflate block used to escape as a traceback."""
    payload = struct.pack(">iiii", IMAGES_MAGIC, 2, 28, 28) + bytes(range(256)) * 6 + bytes(32)
    data = bytearray(gzip.compress(payload, mtime=0))
    for position, value in ((142, 20), (217, 248), (225, 197)):  # "invalid distance code"
        data[position] = value
    (tmp_path / "bad.gz").write_bytes(bytes(data))
    with pytest.raises(GonomalyError, match="bad.gz: cannot read IDX file"):
        read_idx(tmp_path / "bad.gz", IMAGES_MAGIC)


# -- images ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_seeds(mnist_digits):
    """Real digits encoded in many formats and modes: what the mutations start from."""
    digit = mnist_digits[0]
    grey = Image.fromarray(digit)
    rgb = Image.fromarray(np.stack([digit, digit // 2, 255 - digit], -1))
    seeds = []
    for image, fmt, options in [
        (grey, "PNG", {}), (rgb, "PNG", {}), (rgb.convert("RGBA"), "PNG", {}),
        (grey.convert("P"), "PNG", {}), (Image.fromarray(digit.astype(np.uint16) * 257), "PNG", {}),
        (grey, "JPEG", {"quality": 90}), (rgb.convert("CMYK"), "JPEG", {}), (grey, "BMP", {}),
        (grey, "TIFF", {}), (Image.fromarray(digit.astype(np.float32)), "TIFF", {}),
        (rgb, "WEBP", {"lossless": True}), (grey, "GIF", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        seeds.append(buffer.getvalue())
    return seeds


def _check_image(path: Path, max_pixels: int) -> None:
    for shape in ((1, 28, 28), (3, 28, 28)):
        try:
            array = read_image(path, shape, max_pixels=max_pixels)
        except GonomalyError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            continue
        assert array.shape == shape and array.dtype == np.float32
        assert np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1


@FUZZ
@given(data=st.data())
def test_image_reader_fuzz(image_seeds, data):
    choice = data.draw(st.integers(-1, len(image_seeds) - 1))
    if choice < 0:
        content = data.draw(st.binary(max_size=1024))
    else:
        content = _mutate(image_seeds[choice], *data.draw(mutations))
    path = WORK / "fuzz.img"
    path.write_bytes(content)
    _check_image(path, data.draw(st.sampled_from([50_000_000, 784, 100])))


def test_truncated_real_images_at_every_length(image_seeds):
    path = WORK / "cut.img"
    for seed in image_seeds:
        for length in sorted({0, 1, 8, 16, 33, len(seed) // 2, len(seed) - 1} | set(range(0, len(seed), 97))):
            path.write_bytes(seed[:length])
            _check_image(path, 50_000_000)


# -- folder collection -------------------------------------------------------------------------
names = st.text(alphabet=st.sampled_from("ab.-_ é\\"), min_size=1, max_size=6).filter(
    lambda s: s not in (".", ".."))
suffixes = st.sampled_from(sorted(IMAGE_SUFFIXES) + [".PNG", ".txt", "", ".png.bak"])


@st.composite
def trees(draw):
    entries = []
    for _ in range(draw(st.integers(0, 8))):
        depth = draw(st.lists(names, min_size=0, max_size=3))
        kind = draw(st.sampled_from(["file", "dir", "link", "loop", "dangling", "fifo"]))
        entries.append((depth, draw(names) + draw(suffixes), kind))
    extra = draw(st.lists(st.sampled_from(["missing.png", "x" * 300 + ".png", "nul\x00.png", "", "fifo"]),
                          max_size=2))
    return entries, extra


@FUZZ
@given(trees())
def test_folder_collection_fuzz(tree):
    entries, extra = tree
    root = Path(tempfile.mkdtemp(dir=WORK))
    for parts, name, kind in entries:
        folder = root.joinpath(*parts)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / name
            if target.exists() or target.is_symlink():
                continue
            if kind == "file":
                target.write_bytes(b"x")
            elif kind == "dir":
                target.mkdir()
            elif kind == "link":
                target.symlink_to(root)  # a loop through a folder link
            elif kind == "loop":
                target.symlink_to(target)
            elif kind == "dangling":
                target.symlink_to(root / "nowhere")
            else:
                os.mkfifo(target)
        except (FileExistsError, NotADirectoryError):
            continue
    fifo = root / "a-fifo.png"
    os.mkfifo(fifo)
    arguments = [root] + [fifo if e == "fifo" else root / e if e else "" for e in extra]
    try:
        found = collect_image_paths(arguments)
    except GonomalyError as exc:
        assert "\n" not in str(exc)
        return
    assert all(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in found)
    assert fifo not in found
