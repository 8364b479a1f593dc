"""Training speed of every model, measured interleaved in one process so that a busy machine
slows them alike.

Usage: python benchmarks/bench_models_speed.py [--steps N] [--batch-size B] [--rounds R]

Per model: the median over R rounds of the seconds per optimizer step (N steps of batch B of
real MNIST digits, after one warm-up step), and the seconds per epoch of 2,000 digits it implies.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _setup  # noqa: F401  (src/ on the path, the GONOMALY_DATA default)
import torch

from gonomaly.data import load_data  # noqa: E402
from gonomaly.detector import DETECTORS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    x = torch.from_numpy(load_data(f"mnist:n_train={args.steps * args.batch_size},n_test=1").train)
    setups = {}
    for name, cls in DETECTORS.items():
        torch.manual_seed(0)
        detector = cls()
        model = detector._build_model((1, 28, 28)).train()
        setups[name] = (model, torch.optim.Adam(model.parameters(), lr=detector.lr))
    times = {name: [] for name in setups}

    def step(model, optimizer, batch):
        loss = model.training_loss(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for model, optimizer in setups.values():
        step(model, optimizer, x[:args.batch_size])  # warm-up (first jacfwd, allocations)
    for _ in range(args.rounds):
        for name, (model, optimizer) in setups.items():
            start = time.perf_counter()
            for i in range(args.steps):
                step(model, optimizer, x[i * args.batch_size:(i + 1) * args.batch_size])
            times[name].append((time.perf_counter() - start) / args.steps)
    print(f"{'model':<16}{'s/step':>8}{'s/epoch of 2,000':>18}")
    for name, values in times.items():
        per_step = statistics.median(values)
        print(f"{name:<16}{per_step:>8.3f}{per_step * -(-2000 // args.batch_size):>18.1f}")


if __name__ == "__main__":
    main()
