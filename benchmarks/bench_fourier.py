"""Does a Fourier-feature encoding of the coordinates help the implicit GON train?

Usage: python benchmarks/bench_fourier.py [--n-train N] [--epochs E] [--features 0,4]

Trains the implicit GON (SIREN, latent 32, width 256, lr 1e-4, batch 32, seed 0) on the first N
clean MNIST training digits once per number of Fourier octaves K (0 = raw coordinates, the
original), and prints per K: seconds per epoch, the mean training loss of the first and the
last 10 steps, and the reconstruction MSE of the first 500 test digits.
"""

from __future__ import annotations

import argparse

import _setup  # noqa: F401  (src/ on the path, the GONOMALY_DATA default)
import numpy as np

from gonomaly import ImplicitGONDetector  # noqa: E402
from gonomaly.data import load_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--features", default="0,4")
    args = parser.parse_args()
    data = load_data(f"mnist:n_train={args.n_train},n_test=500")
    print(f"{'K':>3} {'s/epoch':>8} {'loss first 10':>14} {'loss last 10':>13} {'test MSE':>9}")
    for k in (int(v) for v in args.features.split(",")):
        detector = ImplicitGONDetector(fourier_features=k, epochs=args.epochs, batch_size=32, seed=0)
        detector.fit(data.train)
        seconds = detector.training_stats_["seconds"] / args.epochs
        test = data.test.images
        mse = float(((detector.reconstruct(test) - test) ** 2).mean())
        losses = detector.loss_history_
        print(f"{k:>3} {seconds:>8.1f} {np.mean(losses[:10]):>14.2f} {np.mean(losses[-10:]):>13.2f} "
              f"{mse:>9.4f}", flush=True)


if __name__ == "__main__":
    main()
