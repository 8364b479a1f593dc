"""Devices, and multi-process training and scoring on PyTorch's own engine (torchrun + DDP).

``gonomaly train``, ``evaluate``, ``score`` and ``run`` run unchanged under
``torchrun --nproc_per_node=N`` (and its multi-node flags): torchrun sets ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK`` and the rendezvous variables, and ``session`` joins that process group
(gloo on CPU, NCCL on GPU). Without those variables nothing here talks to anybody, and training
and scoring are exactly the single-process code paths.

Training (``TrainingStep``): DistributedDataParallel over a module whose forward is the whole
per-sample loss, gradient-origin step included; ``GlobalBatchSampler`` (a DistributedSampler)
hands each rank its share of the *same* global batches a single process would draw, so that N
processes x batch B train like 1 process x batch N*B. Scoring (``sharded``, ``merge_rounds``):
each rank scores a contiguous run of whole scoring batches, and rank 0 gets the results in input
order; a bad input on any rank stops every rank with that input's one-line error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from gonomaly.errors import GonomalyError

DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class World:
    """This process's place in the process group; the default is a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise GonomalyError(f"environment variable {name}={value[:40]!r}: not a non-negative integer")
    return number


def env_world() -> World:
    """The world torchrun describes in the environment (before or without joining it)."""
    return World(_env_int("RANK", 0), max(_env_int("WORLD_SIZE", 1), 1), _env_int("LOCAL_RANK", 0))


def world() -> World:
    """The joined process group, or a single process when there is none."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return World()


def resolve_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` (this process's GPU: ``LOCAL_RANK``) or ``auto`` (cuda when there is
    one, else cpu). ``cuda`` without CUDA is a one-line error, never a torch traceback."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise GonomalyError(f"device {name}: CUDA is not available (no GPU visible, or a CPU "
                                f"build of torch {torch.__version__}); use --device cpu or auto")
        if name != "cuda":
            return torch.device(name)
        return torch.device("cuda", env_world().local_rank % torch.cuda.device_count())
    raise GonomalyError(f"device '{name}': unknown (use {', '.join(DEVICES)})")


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise GonomalyError(f"precision '{precision}': unknown (use {' or '.join(PRECISIONS)})")
    if precision == "bf16" and device.type != "cuda":
        raise GonomalyError("precision bf16: mixed precision needs a CUDA device (--device cuda); "
                            "on CPU gonomaly trains in float32")


def autocast(precision: str, device: torch.device):
    """bf16 autocast on CUDA for the training loss; the models keep the gradient-origin step
    (F(0), J or the inner gradient) in float32 and return float32 reconstructions, and the
    losses are float32 (see ``ConvGON.training_loss``)."""
    if precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def session(device: str = "cpu") -> Iterator[World]:
    """Join the process group that torchrun describes for the length of a command (gloo on CPU,
    NCCL on GPU), and leave it afterwards; a single process when ``WORLD_SIZE`` is unset or 1."""
    env = env_world()
    if not env.distributed or (dist.is_available() and dist.is_initialized()):
        yield world()
        return
    if not dist.is_available():
        raise GonomalyError("WORLD_SIZE > 1, but this torch build has no torch.distributed")
    target = resolve_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """Each rank's seed for its own random draws (e.g. augmentation), derived from ``--seed``.
    The model's initial weights and the batch order come from ``--seed`` itself, the same on
    every rank (DDP also broadcasts rank 0's weights at the start)."""
    return int(np.random.SeedSequence([seed & (2**63 - 1), rank]).generate_state(1, np.uint64)[0] >> 1)


# -- training ------------------------------------------------------------------------------------
class GlobalBatchSampler(DistributedSampler):
    """This rank's share of every global batch of one epoch's permutation.

    DistributedSampler's own split (its own permutation, then every W-th index of the whole
    epoch) gives W processes other batches than one process. Here the permutation is the
    single-process one (``set_order``: drawn from the ``--seed`` generator, identical on every
    rank), cut into global batches of ``batch_size * W``; rank r takes elements r, r + W, ... of
    each. W processes x batch B therefore see exactly the batches of 1 process x batch W * B.
    """

    def __init__(self, n: int, batch_size: int, world: World):
        super().__init__(range(n), num_replicas=world.size, rank=world.rank, shuffle=False)
        self.n = n
        self.global_batch = batch_size * world.size
        self.order = torch.arange(n)

    def set_order(self, order: torch.Tensor) -> None:
        self.order = order

    def steps(self) -> int:
        return -(-self.n // self.global_batch)

    def batch(self, step: int) -> torch.Tensor:
        start = step * self.global_batch
        return self.order[start:start + self.global_batch][self.rank::self.num_replicas]

    def __iter__(self):
        for step in range(self.steps()):
            yield from self.batch(step).tolist()

    def __len__(self) -> int:
        return sum(len(self.batch(step)) for step in range(self.steps()))


class _PerSampleLoss(nn.Module):
    """The module DDP wraps: its forward is the whole training loss of the model.

    Why the loss, not the decoder: DDP prepares its gradient reducer in ``forward``, and a GON
    runs the decoder several times per step (for F(0) and J by forward-mode autodiff, or for the
    inner ``autograd.grad(..., create_graph=True)``, then for the reconstruction). Wrapping only
    the decoder would arm the reducer once per decoder call and fail ("mark a variable ready only
    once"). With the whole loss inside one forward, the reducer is armed once per step, and
    ``loss.backward()`` fires each parameter's hook once: autograd sums all paths into a
    parameter (through J, through F(0), through the decoder of z) before its AccumulateGrad
    node runs. The inner gradient fires no hook at all: ``autograd.grad(..., z0)`` computes
    the gradient for z0 only and runs no parameter's AccumulateGrad. Every parameter takes part
    in every step, so ``find_unused_parameters`` stays off. tests/test_distributed.py checks
    all of this: one all-reduce of every parameter element per step, and gradients equal to a
    single process's on the whole batch, for the closed form and for the autograd definition.
    """

    def __init__(self, model: nn.Module, loss: str | Callable[[torch.Tensor], torch.Tensor] = "training_loss"):
        super().__init__()
        self.model = model
        # A method name of the model, or a callable over the same model's parameters (the
        # detector's training loss, which may add an SSIM term to the model's own).
        self.loss = getattr(model, loss) if isinstance(loss, str) else loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.loss(x)


class TrainingStep:
    """The loss of one optimizer step, for one process or under DDP.

    One process: ``model.training_loss(batch).mean()``, exactly as always. Under DDP each rank
    returns ``sum of its per-sample losses * W / global batch``; DDP averages the gradients over
    the W ranks, which gives the gradient of the global batch's mean even when the last global
    batch does not split evenly. The loss reported (``value``) is the global batch's mean, from
    one all-reduce of two numbers.
    """

    def __init__(self, model: nn.Module, n: int, batch_size: int, device: torch.device,
                 precision: str, seed: int,
                 loss: str | Callable[[torch.Tensor], torch.Tensor] = "training_loss"):
        self.world = world()
        self.device = device
        self.precision = precision
        self.sampler = GlobalBatchSampler(n, batch_size, self.world)
        per_sample = _PerSampleLoss(model, loss)
        self.loss_fn = per_sample.loss
        self.ddp = None
        if self.world.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                per_sample, device_ids=[device] if device.type == "cuda" else None)
            torch.manual_seed(rank_seed(seed, self.world.rank))
        self.model = model
        self._sums = None

    def indices(self, order: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
        if self.ddp is None:
            return order[step * batch_size:(step + 1) * batch_size]
        self.sampler.set_order(order)
        return self.sampler.batch(step)

    def loss(self, batch: torch.Tensor, global_count: int) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        with autocast(self.precision, self.device):
            if self.ddp is None:
                return self.loss_fn(batch).mean()
            per_sample = self.ddp(batch).float()
        total = per_sample.sum()
        self._sums = torch.stack([total.detach(), torch.tensor(float(len(batch)), device=total.device)])
        return total * (self.world.size / global_count)

    def value(self, loss: torch.Tensor) -> float:
        """The step's loss: the mean over the global batch."""
        if self.ddp is None:
            return loss.item()
        sums = self._sums.double()
        dist.all_reduce(sums)
        return (sums[0] / sums[1]).item()

    def global_count(self, step: int) -> int:
        return min(self.sampler.global_batch, self.sampler.n - step * self.sampler.global_batch)


# -- scoring -------------------------------------------------------------------------------------
def _all_gather(obj, world: World) -> list:
    parts = [None] * world.size
    dist.all_gather_object(parts, obj)
    return parts


def _first_error(parts: list) -> None:
    errors = [error for _, error in parts if error]
    if errors:
        raise GonomalyError(errors[0])


def shard_bounds(n: int, block: int, world: World) -> tuple[int, int]:
    """This rank's contiguous run of items, a whole number of ``block``-sized batches each, so
    every batch is the one a single process would score."""
    blocks = -(-n // block)
    first, last = (blocks * world.rank) // world.size, (blocks * (world.rank + 1)) // world.size
    return min(first * block, n), min(last * block, n)


def sharded(score: Callable[[int, int], np.ndarray], n: int, block: int,
            group: World | None = None) -> np.ndarray | None:
    """``score(start, stop)`` on this rank's shard of n items; on rank 0 the results of all
    ranks, in input order (None on the others). One process: ``score(0, n)``."""
    group = group or world()
    if not group.distributed:
        return score(0, n)
    start, stop = shard_bounds(n, block, group)
    try:
        part, error = (score(start, stop) if stop > start else None), ""
    except GonomalyError as exc:
        part, error = None, str(exc)
    parts = _all_gather((part, error), group)  # all ranks see an error, so all of them stop
    _first_error(parts)
    return np.concatenate([p for p, _ in parts if p is not None]) if group.main else None


def round_robin(items: Sequence, block: int, world: World) -> list:
    """This rank's items: in each round of ``block * W`` items, the rank's block of ``block``."""
    if not world.distributed:
        return list(items)
    step = block * world.size
    return [item for start in range(world.rank * block, len(items), step)
            for item in items[start:start + block]]


def merge_rounds(local: Iterator[list], n: int, block: int, world: World) -> Iterator[list]:
    """Per round of ``block * W`` items, the round's results in input order (on rank 0; empty
    lists on the others). ``local`` yields this rank's result list per round, for its share of
    ``round_robin(items, block, world)``; it may raise GonomalyError for a bad item, which then
    stops every rank. Memory holds one round, so a stream of any length stays flat."""
    if not world.distributed:
        yield from local
        return
    for _ in range(-(-n // (block * world.size))):
        try:
            part, error = next(local, []), ""
        except GonomalyError as exc:
            part, error = [], str(exc)
        parts = _all_gather((part, error), world)
        _first_error(parts)
        yield [item for p, _ in parts for item in p] if world.main else []
