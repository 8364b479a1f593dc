"""Mixed precision on a GPU: does bf16 training change the reconstruction error?

Usage: python benchmarks/bench_precision.py [--device cuda] [--epochs 1] [--n-train 60000]
       [--batch-size 128] [--json PATH]

Trains the GON twice from the same seed on the same MNIST digits, in float32 and with
``precision="bf16"`` (autocast for the decoder's reconstruction pass; the gradient-origin step and
the losses stay float32), then scores the 10,000 MNIST test digits with each (scoring is always
float32). Prints, per precision, the training images/s, the final training loss and the mean
test reconstruction MSE, and the relative difference of the two. bf16 needs CUDA: on a machine
without it the script says so and exits 2. Real digits from $GONOMALY_DATA (default ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import gonomaly  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))

from gonomaly import GONDetector  # noqa: E402
from gonomaly.data import load_data  # noqa: E402
from gonomaly.errors import GonomalyError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("GONOMALY_DATA", str(ROOT.parent / "shared" / "data"))
    data = load_data(f"mnist:n_train={args.n_train}", seed=0)
    results = {}
    for precision in ("fp32", "bf16"):
        detector = GONDetector(epochs=args.epochs, batch_size=args.batch_size, seed=0,
                               device=args.device, precision=precision)
        try:
            detector.fit(data.train)
        except GonomalyError as exc:
            print(f"bench_precision: {exc}", file=sys.stderr)
            return 2
        test_mse = detector.score_samples(data.test.images)
        results[precision] = {"images_per_s": detector.training_stats_["images_per_s"],
                              "final_loss": detector.training_stats_["final_loss"],
                              "test_mse_mean": float(np.mean(test_mse)),
                              "test_mse_median": float(np.median(test_mse))}
        print(f"{precision}: {results[precision]}")
    fp32, bf16 = results["fp32"]["test_mse_mean"], results["bf16"]["test_mse_mean"]
    results["relative_difference_test_mse"] = (bf16 - fp32) / fp32
    results["speedup"] = results["bf16"]["images_per_s"] / results["fp32"]["images_per_s"]
    print(f"test MSE bf16 vs fp32: {results['relative_difference_test_mse']:+.2%}; "
          f"training speed-up {results['speedup']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
