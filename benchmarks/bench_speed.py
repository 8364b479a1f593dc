"""Training and scoring throughput of gonomaly against baselines measured in the same run.

Usage: python benchmarks/bench_speed.py [--steps N] [--threads T]

- Training: images/s of gonomaly's GON step (closed form, and autograd with create_graph=True,
  which give the same losses) against the reference loop, a faithful
  re-implementation of the seed notebook's step (BatchNorm after each transposed convolution,
  inner loss averaged over the batch, Adam 1e-3, batch 128). The reference lives here only.
- Scoring: images/s of the closed-form encoder against naive autograd encoding (forward,
  backward, forward) and against the CAE.
Prints each figure and the ratios; real MNIST digits from $GONOMALY_DATA (default ../shared/data).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
try:
    import gonomaly  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))

from gonomaly import CAEDetector  # noqa: E402
from gonomaly.data.idx import read_images  # noqa: E402
from gonomaly.models import ConvGON  # noqa: E402


class SeedGON(nn.Module):
    """The seed notebook's conv GON: BatchNorm + ELU, batch-mean inner loss."""

    def __init__(self, latent_dim: int = 100, width: int = 64):
        super().__init__()
        self.latent_dim = latent_dim

        def block(i, o, k, s, p):
            return [nn.ConvTranspose2d(i, o, k, s, p), nn.BatchNorm2d(o), nn.ELU()]

        self.net = nn.Sequential(*block(latent_dim, 4 * width, 4, 1, 0), *block(4 * width, 2 * width, 3, 2, 1),
                                 *block(2 * width, width, 4, 2, 1),
                                 nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Sigmoid())

    def training_loss(self, x):
        z0 = torch.zeros(x.shape[0], self.latent_dim, 1, 1, requires_grad=True)
        inner = ((self.net(z0) - x) ** 2).sum([1, 2, 3]).mean()
        z = -torch.autograd.grad(inner, z0, create_graph=True, retain_graph=True)[0]
        return ((self.net(z) - x) ** 2).sum([1, 2, 3]).mean()


def train_rate(model, images, batch, steps) -> tuple[float, float]:
    """Images/s of `steps` Adam steps (after 3 warm-up steps) and the last loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    loss = None
    for step in range(steps + 3):
        if step == 3:
            start = time.perf_counter()
        x = images[(step * batch) % (len(images) - batch):][:batch]
        loss = model.training_loss(x)
        loss = loss.mean() if loss.dim() else loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start), loss.item()


def score_rate(function, images, repeats=3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function(images)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(os.environ.get("GONOMALY_DATA", ROOT / ".." / "shared" / "data"))
    digits = read_images(data / "mnist" / "train-images-idx3-ubyte.gz")[:20000]
    images = torch.from_numpy(digits.astype(np.float32) / 255)[:, None]
    print(f"{os.cpu_count()} cpus, torch {torch.__version__}, {torch.get_num_threads()} threads")

    print("\n-- training (images/s, higher is better)")
    rows = []
    class AutogradStep(ConvGON):
        """gonomaly's GON with the inner gradient by autograd (create_graph=True)."""

        def training_loss(self, x):
            return self.autograd_training_loss(x)

    for name, make, batch in [("reference loop (BatchNorm, batch 128)", SeedGON, 128),
                              ("gonomaly, autograd step, batch 128", lambda: AutogradStep((1, 28, 28)), 128),
                              ("gonomaly, closed-form step, batch 128", lambda: ConvGON((1, 28, 28)), 128)]:
        torch.manual_seed(0)
        rate, loss = train_rate(make(), images, batch, args.steps)
        rows.append((name, rate))
        print(f"{name:<42}{rate:>9.0f} img/s   loss after {args.steps + 3} steps {loss:.3f}")
    for name, rate in rows[1:]:
        print(f"ratio {name} / reference: {rate / rows[0][1]:.2f}x")

    print("\n-- scoring (images/s on 5,000 digits)")
    test = images[:5000]
    torch.manual_seed(0)
    gon = ConvGON((1, 28, 28)).eval()

    @torch.no_grad()
    def closed(x):
        for b in x.split(512):
            gon.decode(gon.encode(b))

    @torch.no_grad()
    def autograd(x):
        for b in x.split(512):
            gon.decode(gon.encode(b))

    gon.prepare_closed_form()
    closed_rate = score_rate(closed, test)
    gon.closed_form = None
    autograd_rate = score_rate(autograd, test)
    cae = CAEDetector(epochs=1).fit(test[:256].numpy())
    cae_rate = score_rate(lambda x: cae.score_samples(x.numpy()), test)
    print(f"{'GON, closed-form encoder':<42}{closed_rate:>9.0f} img/s")
    print(f"{'GON, autograd encoder':<42}{autograd_rate:>9.0f} img/s")
    print(f"{'CAE':<42}{cae_rate:>9.0f} img/s")
    print(f"ratio closed form / autograd: {closed_rate / autograd_rate:.2f}x; "
          f"closed form / CAE: {closed_rate / cae_rate:.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
