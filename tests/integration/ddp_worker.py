"""Run by tests/test_distributed.py under torchrun: one DDP backward pass of the GON's training
loss, in its closed form and by its autograd definition (create_graph=True), on this rank's share
of a fixed batch of real digits. Writes OUT/rank<R>_<loss>.npz: the gradients after DDP's
all-reduce, the reported loss, and the sizes of the buckets DDP's communication hook reduced."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from gonomaly import distributed
from gonomaly.data import load_data
from gonomaly.models import ConvGON

N_IMAGES, PER_RANK_BATCH = 9, 5  # one global batch of 9 over 2 ranks: 5 + 4 images


def main(out: Path) -> None:
    torch.set_num_threads(1)
    x = torch.from_numpy(load_data(f"mnist:n_train={N_IMAGES}", seed=0).train)
    with distributed.session("cpu") as world:
        for loss_name in ("training_loss", "autograd_training_loss"):
            torch.manual_seed(0)
            model = ConvGON(tuple(x.shape[1:]))
            step = distributed.TrainingStep(model, len(x), PER_RANK_BATCH, torch.device("cpu"),
                                            "fp32", seed=0, loss=loss_name)
            reduced = []

            def count(state, bucket):
                reduced.append(bucket.buffer().numel())  # noqa: B023 - called at once
                return default_hooks.allreduce_hook(state, bucket)

            step.ddp.register_comm_hook(None, count)
            batch = x[step.indices(torch.arange(len(x)), 0, PER_RANK_BATCH)]
            loss = step.loss(batch, step.global_count(0))
            loss.backward()
            grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
            np.savez(out / f"rank{world.rank}_{loss_name}.npz", value=step.value(loss),
                     reduced=np.asarray(reduced), n_local=len(batch), **grads)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
