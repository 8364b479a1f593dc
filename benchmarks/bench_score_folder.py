"""Streaming scoring of a large folder: images/s and peak memory, small folder as the baseline.

Usage: python benchmarks/bench_score_folder.py [--n 100000] [--workers 2] [--dir DIR]

Writes N real MNIST test digits as PNG files (cycling through the 10,000), trains a small GON,
then runs `gonomaly score` as a subprocess on 1,000 files and on all N, and prints the images/s
and the peak RSS of each run and their ratio: flat memory means a ratio near 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
try:
    import gonomaly  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))

from gonomaly import GONDetector  # noqa: E402
from gonomaly.data.idx import read_images  # noqa: E402


def write_folder(folder: Path, digits: np.ndarray, n: int) -> None:
    existing = sum(1 for _ in folder.rglob("*.png")) if folder.exists() else 0
    if existing == n:
        return
    for i in range(n):
        sub = folder / f"{i // 10000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits[i % len(digits)]).save(sub / f"{i:06d}.png")


# A fresh intermediate process per run, so the peak RSS it reports is that run's alone
# (RUSAGE_CHILDREN keeps the largest child ever waited for). The peak covers the scoring process
# and its DataLoader workers, the largest of them.
_MEASURE = """
import resource, subprocess, sys
lines = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=True).stdout.count(b"\\n")
print(lines, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def score_run(run: Path, folder: Path, workers: int) -> tuple[float, float, int]:
    """Seconds, peak RSS (MB) of the scoring subprocess, lines printed."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "gonomaly.cli",
                             "-q", "score", str(run), str(folder), "--workers", str(workers)],
                            capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    lines, peak_kb = (int(v) for v in result.stdout.split())
    return seconds, peak_kb / 1024, lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    data = Path(os.environ.get("GONOMALY_DATA", ROOT / ".." / "shared" / "data"))
    digits = read_images(data / "mnist" / "t10k-images-idx3-ubyte.gz")
    base = args.dir or Path(tempfile.mkdtemp(prefix="gonomaly-bench-"))
    small, large, run = base / "small", base / "large", base / "run"
    start = time.perf_counter()
    write_folder(small, digits, 1000)
    write_folder(large, digits, args.n)
    print(f"{args.n:,} PNG files ready in {time.perf_counter() - start:.0f} s under {base}")
    train = read_images(data / "mnist" / "train-images-idx3-ubyte.gz")[:2000]
    GONDetector(epochs=1).fit(train).save(run)
    rows = []
    for name, folder, n in (("1,000 files (baseline)", small, 1000), (f"{args.n:,} files", large, args.n)):
        seconds, peak, lines = score_run(run, folder, args.workers)
        assert lines == n, f"expected {n} result lines, got {lines}"
        rows.append(peak)
        print(f"{name:<24}{n / seconds:>9.0f} img/s   peak RSS {peak:>6.0f} MB   ({seconds:.0f} s)")
    print(f"peak RSS ratio, {args.n:,} files / 1,000 files: {rows[1] / rows[0]:.2f}x "
          f"(goal: under 1,536 MB whatever the size)")


if __name__ == "__main__":
    main()
