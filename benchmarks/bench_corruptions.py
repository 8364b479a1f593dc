"""Time the MNIST-C corruptions on the first 2,000 real MNIST test digits.

Usage: python benchmarks/bench_corruptions.py [N]

Reads ``$GONOMALY_DATA/mnist/t10k-images-idx3-ubyte.gz`` (GONOMALY_DATA defaults to
``../shared/data`` relative to the repository root). Prints, for each of the 15 corruptions
(and identity, for reference), the seconds taken and the images per second, then the total
over the 15 and its ratio to the 60-second budget.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import gonomaly  # noqa: F401
except ImportError:  # not installed: run from the source tree
    sys.path.insert(0, str(ROOT / "src"))

from gonomaly.data.corruptions import ALL_CORRUPTIONS, IDENTITY, corrupt  # noqa: E402
from gonomaly.data.idx import read_images  # noqa: E402

BUDGET_S = 60.0
SEED = 0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    data_dir = Path(os.environ.get("GONOMALY_DATA", ROOT / ".." / "shared" / "data"))
    path = data_dir / "mnist" / "t10k-images-idx3-ubyte.gz"
    images = read_images(path)[:n]
    n = len(images)
    print(f"{n} real MNIST test digits from {path.resolve()}; cpus: {os.cpu_count()}")
    print(f"{'corruption':<15} {'seconds':>8} {'images/s':>10}")
    total = 0.0
    for name in (IDENTITY, *ALL_CORRUPTIONS):
        start = time.perf_counter()
        out = corrupt(images, name, SEED)
        seconds = time.perf_counter() - start
        assert out.shape == images.shape
        note = "  (reference, not counted)" if name == IDENTITY else ""
        print(f"{name:<15} {seconds:8.3f} {n / seconds:10.0f}{note}")
        if name != IDENTITY:
            total += seconds
    print(f"{'total (15)':<15} {total:8.3f} {15 * n / total:10.0f}")
    print(f"total / 60 s budget = {total / BUDGET_S:.3f}")


if __name__ == "__main__":
    main()
