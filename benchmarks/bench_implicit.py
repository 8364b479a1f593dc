"""The implicit GON's training step: today's step against each speed-up, and whether bf16 changes
the reconstruction error.

Usage: python benchmarks/bench_implicit.py [--threads T] [--repeats R] [--steps S] [--seeds 0,1,2]
       [--fraction F] [--n-train N]

- Speed: seconds per training step (batch 32, latent 32, width 256, the best of R steps after one
  warm-up) of today's step (F(0) and J by forward mode, float32, every pixel: the step before
  issue 15, measured here in the same run) and of each variant, with the ratio against today's.
- Precision: for each seed, the implicit GON trained S Adam steps (batch 32, lr 1e-4,
  ``coordinate_fraction`` F) on the first N MNIST training digits in float32 and with bf16
  hidden products; prints the reconstruction MSE of 500 held-out training digits (the last 500
  of the training file: validation data, never the test set) for each, and the mean and
  standard deviation over seeds of the bf16 - fp32 difference.
Real digits from $GONOMALY_DATA (default ../shared/data).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import _setup  # noqa: F401  (src/ on the path, the GONOMALY_DATA default)
import numpy as np
import torch

from gonomaly.data.idx import read_images
from gonomaly.models import GradientOriginNetwork, ImplicitGON

SHAPE = (1, 28, 28)
BATCH = 32


class TodayStep(ImplicitGON):
    """The step before issue 15: F(0) and J of the gradient-origin step by forward mode."""

    origin_terms = GradientOriginNetwork.origin_terms


VARIANTS = {
    "today: forward-mode J, fp32, every pixel": lambda: TodayStep(SHAPE),
    "J by one backward pass, fp32, every pixel": lambda: ImplicitGON(SHAPE),
    "+ bf16 hidden products": lambda: ImplicitGON(SHAPE, training_precision="bf16"),
    "+ 1/4 of the pixels, fp32": lambda: ImplicitGON(SHAPE, coordinate_fraction=0.25),
    "+ 1/4 of the pixels, bf16": lambda: ImplicitGON(SHAPE, coordinate_fraction=0.25,
                                                     training_precision="bf16"),
    "+ 1/4 of the pixels, bf16, 4 Fourier octaves": lambda: ImplicitGON(
        SHAPE, fourier_features=4, coordinate_fraction=0.25, training_precision="bf16"),
}


def step_seconds(model: ImplicitGON, x: torch.Tensor, repeats: int) -> float:
    """The best of ``repeats`` forward + backward passes of the training loss (one warm-up)."""
    best = float("inf")
    for i in range(repeats + 1):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        model.training_loss(x).mean().backward()
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def validation_mse(model: ImplicitGON, images: torch.Tensor) -> float:
    model.eval().prepare_closed_form()
    with torch.no_grad():
        mse = float((model(images) - images).pow(2).mean())
    model.train()
    return mse


def train(precision: str, seed: int, fraction: float, train_images: torch.Tensor, steps: int) -> ImplicitGON:
    torch.manual_seed(seed)
    model = ImplicitGON(SHAPE, coordinate_fraction=fraction, training_precision=precision).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))
    for step in range(steps):
        batch = train_images[order[(step * BATCH) % len(order):][:BATCH]]
        loss = model.training_loss(batch).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--skip-precision", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    digits = read_images(Path(os.environ["GONOMALY_DATA"]) / "mnist" / "train-images-idx3-ubyte.gz")
    images = torch.from_numpy(digits.astype(np.float32) / 255)[:, None]
    print(f"{os.cpu_count()} cpus, torch {torch.__version__}, {torch.get_num_threads()} threads")

    print("\n-- training step, batch 32 (seconds, lower is better)")
    baseline = None
    for name, make in VARIANTS.items():
        torch.manual_seed(0)
        seconds = step_seconds(make().train(), images[:BATCH], args.repeats)
        baseline = baseline or seconds
        print(f"{name:<48}{seconds:>8.3f} s   {baseline / seconds:>6.2f}x today's", flush=True)
    if args.skip_precision:
        return

    print(f"\n-- validation MSE after {args.steps} steps, 1/{1 / args.fraction:g} of the pixels")
    differences = []
    for seed in (int(s) for s in args.seeds.split(",")):
        mse = {p: validation_mse(train(p, seed, args.fraction, images[:args.n_train], args.steps),
                                 images[-500:]) for p in ("fp32", "bf16")}
        differences.append(mse["bf16"] - mse["fp32"])
        print(f"seed {seed}: fp32 {mse['fp32']:.5f}   bf16 {mse['bf16']:.5f}   "
              f"difference {differences[-1]:+.5f}", flush=True)
    spread = statistics.stdev(differences) if len(differences) > 1 else float("nan")
    print(f"bf16 - fp32: mean {statistics.mean(differences):+.5f}, standard deviation {spread:.5f}")


if __name__ == "__main__":
    main()
