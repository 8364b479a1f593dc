"""The training loop: batches, the optimizer step (closed-form or autograd, one process or
DDP), stop signals, periodic checkpoints, resume and the progress bar.

The random calls are those of a plain loop (seed, model init, one ``randperm`` of the
batch-order generator per epoch), so checkpoints change nothing; a checkpoint keeps that
generator's state from before the current epoch's permutation, which a resumed run recomputes,
skipping the steps already done. ``StopSignals`` turns SIGINT and SIGTERM into a flag that the
loop checks after each optimizer step.
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gonomaly import distributed
from gonomaly.augment import augment_batch
from gonomaly.checkpoint import RESUME_DIR, Checkpointer, Progress, TrainingState, ValidationProgress
from gonomaly.errors import GonomalyError, TrainingInterrupted
from gonomaly.scores.maps import error_map

LOSSES = ("l2", "l2+ssim")


def interrupted(signum: int, run_dir: Path | None, where: str) -> TrainingInterrupted:
    """The exception for a training stopped by ``signum`` (exit code 128 + signum)."""
    name = signal.Signals(signum).name
    if run_dir is None:
        message = f"training stopped by {name} {where}; no checkpoint folder, nothing saved"
    else:
        message = (f"interrupted by {name} {where}; checkpoint saved in {run_dir / RESUME_DIR}; "
                   f"resume with: gonomaly train --resume {shlex.quote(str(run_dir))}")
    return TrainingInterrupted(message, 128 + signum, run_dir)


class StopSignals:
    """Context manager: within it SIGINT and SIGTERM only set ``signum``, which the training
    loop checks after each step; a second signal is delivered to the previous handlers at once.
    The previous handlers are restored on exit. Outside the main thread (where Python cannot
    install handlers) or with ``enabled=False`` it is a plain flag, raised by ``request()``."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = signum

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # asked twice: stop now, the way the signal normally would
            self._restore()
            signal.raise_signal(signum)
            return
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _restore(self) -> None:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def __exit__(self, *exc_info) -> bool:
        self._restore()
        return False


@dataclass(frozen=True)
class StepInfo:
    """What a training callback sees after each optimizer step (0-based epoch and step)."""

    epoch: int
    step: int
    global_step: int
    loss: float



def per_sample_loss(model: torch.nn.Module, loss: str, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The per-sample training loss: the model's own (squared error), or with ``loss="l2+ssim"``
    the squared error plus 1 - SSIM summed over pixels (structure, as the MVTec paper's
    SSIM autoencoder; the GON's inner gradient step stays the squared error)."""
    if loss == "l2":
        return model.training_loss
    if getattr(model, "training_reconstruction", None) is None:
        raise GonomalyError(f"loss '{loss}': not available for {name} "
                            "(its training loss has a KL term); use loss l2")

    def squared_plus_ssim(batch: torch.Tensor) -> torch.Tensor:
        x_hat = model.training_reconstruction(batch)
        return ((x_hat - batch).pow(2).flatten(1).sum(1)
                + error_map(batch, x_hat, "ssim").flatten(1).sum(1))

    return squared_plus_ssim


def validation_loss(model: torch.nn.Module, loss: Callable[[torch.Tensor], torch.Tensor],
                    images: torch.Tensor, batch_size: int, seed: int, device: torch.device) -> float:
    """The mean per-sample loss of ``images`` (eval mode; nothing is back-propagated: the
    gradient-origin step itself needs autograd, so no ``no_grad``). Its random draws (the
    variational models' noise) come from a forked generator seeded by ``seed``: the measurement
    is repeatable and leaves the training's random stream untouched."""
    model.eval()
    total = 0.0
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(images), batch_size):
            total += loss(images[start:start + batch_size].to(device)).detach().double().sum().item()
    model.train()
    return total / len(images)


@dataclass
class TrainingRun:
    """What a training produced: the model (on ``device``, in eval mode; the best validation
    weights when a validation set was given), the loss per step, the validation state and the
    training seconds (of all sessions when resumed)."""

    model: torch.nn.Module
    device: torch.device
    loss_history: list[float]
    seconds: float
    world_size: int
    validation: ValidationProgress


@dataclass
class _Session:
    """The state one ``Trainer.fit`` call works on."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    order_rng: torch.Generator
    step: distributed.TrainingStep
    done: Progress
    steps_per_epoch: int
    total_steps: int
    start: float
    best: dict[str, torch.Tensor]

    def elapsed(self) -> float:
        return self.done.elapsed_s + time.perf_counter() - self.start


@dataclass
class Trainer:
    """Adam on the per-sample loss's batch mean in ``batch_size`` batches (per process: under
    torchrun the global batch is ``batch_size`` x world size), for ``steps`` optimizer steps
    when given, else ``epochs`` passes.

    With ``validation`` images the validation loss (the same per-sample loss, no augmentation)
    is measured every ``eval_every`` steps (None: at the end of each epoch) and at the last
    step; the best weights are kept and restored at the end, and after ``patience``
    evaluations without improvement (None: never) training stops early."""

    epochs: int
    batch_size: int
    lr: float
    seed: int
    loss: str = "l2"
    augment: str = ""
    device: str = "cpu"
    precision: str = "fp32"
    progress: bool = False
    name: str = "model"
    steps: int | None = None
    validation: torch.Tensor | None = None
    eval_every: int | None = None
    patience: int | None = None

    def fit(self, build_model: Callable[[], torch.nn.Module], x: torch.Tensor,
            checkpoints: Checkpointer | None = None, resume: bool = False,
            on_step: Callable[[StepInfo], bool | None] | None = None) -> TrainingRun:
        """Train a model from ``build_model`` on ``x``; with ``checkpoints``, SIGINT, SIGTERM
        or ``on_step`` returning True save a checkpoint and raise ``TrainingInterrupted``."""
        session = self._start(build_model, x, checkpoints if resume else None)
        with StopSignals(enabled=checkpoints is not None) as stop, \
                tqdm(total=session.total_steps, unit="step", initial=session.done.global_step,
                     disable=not (self.progress and session.step.world.main),
                     desc=f"train {self.name}", dynamic_ncols=True) as bar:
            epoch = session.done.epoch
            while session.done.global_step < session.total_steps and not session.done.validation.stopped:
                self._epoch(session, x, epoch, bar, stop, checkpoints, on_step)
                epoch += 1
        if session.best:
            session.model.load_state_dict(session.best)
        session.model.eval()
        return TrainingRun(session.model, session.step.device, session.done.loss_history,
                           session.elapsed(), session.step.world.size, session.done.validation)

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch

    def _start(self, build_model, x: torch.Tensor, resume_from: Checkpointer | None) -> _Session:
        torch.manual_seed(self.seed)
        model = build_model()  # on the CPU: the same on every device
        device = distributed.resolve_device(self.device)
        model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        order_rng = torch.Generator().manual_seed(self.seed)
        # Under torchrun: DDP, and this rank's share of the global batches (batch_size x world).
        step = distributed.TrainingStep(model, len(x), self.batch_size, device, self.precision,
                                        self.seed, loss=per_sample_loss(model, self.loss, self.name))
        steps_per_epoch = -(-len(x) // (self.batch_size * step.world.size))
        session = _Session(model, optimizer, order_rng, step, Progress(), steps_per_epoch,
                           self.total_steps(steps_per_epoch), time.perf_counter(), {})
        if resume_from is not None:
            self._restore(resume_from, session)
        model.train()
        session.start = time.perf_counter()
        return session

    def _restore(self, checkpoints: Checkpointer, session: _Session) -> None:
        folder = checkpoints.run_dir / RESUME_DIR
        state = checkpoints.load()
        done = state.restore(session.model, session.optimizer, session.order_rng, folder)
        spe = session.steps_per_epoch
        if (done.step >= spe or done.global_step > session.total_steps
                or done.global_step != done.epoch * spe + done.step):
            raise GonomalyError(f"{folder}: progress (epoch {done.epoch}, step {done.step}) "
                                "does not fit this training")
        session.done = done
        session.best = {k: v.to(session.step.device) for k, v in state.best.items()}

    def _epoch(self, session: _Session, x: torch.Tensor, epoch: int, bar, stop: StopSignals,
               checkpoints: Checkpointer | None, on_step) -> None:
        epoch_rng_state = session.order_rng.get_state()  # before this epoch's permutation
        order = torch.randperm(len(x), generator=session.order_rng)
        history = session.done.loss_history
        first = session.done.step if epoch == session.done.epoch else 0
        last_step = min(session.steps_per_epoch, session.total_steps - epoch * session.steps_per_epoch)
        for step in range(first, last_step):
            value, _ = self._step(session, x, order, step)
            bar.update(1)
            # The step is complete: only now may an evaluation, a stop request or a checkpoint act.
            global_step = len(history)
            epoch_done = step + 1 == session.steps_per_epoch
            self._validate(session, global_step, epoch_done or step + 1 == last_step)
            val = session.done.validation
            bar.set_postfix(epoch=f"{epoch + 1}", loss=f"{value:.3f}", refresh=False,
                            **({"val": f"{val.history[-1][1]:.3f}"} if val.history else {}))
            if val.stopped:
                return
            if on_step is not None and on_step(StepInfo(epoch, step, global_step, value)):
                stop.request()
            if checkpoints is not None and (stop.requested or checkpoints.due(global_step)):
                session.done.epoch, session.done.step = epoch + epoch_done, 0 if epoch_done else step + 1
                session.done.global_step, session.done.elapsed_s = global_step, session.elapsed()
                session.start = time.perf_counter()
                checkpoints.save(TrainingState.capture(
                    session.model, session.optimizer,
                    session.order_rng.get_state() if epoch_done else epoch_rng_state, session.done,
                    checkpoints.config, session.best))
            if stop.requested:
                raise interrupted(stop.signum, checkpoints and checkpoints.run_dir,
                                  f"after epoch {epoch + 1}/{-(-session.total_steps // session.steps_per_epoch)}, "
                                  f"step {step + 1}/{session.steps_per_epoch}")
        session.done.epoch, session.done.step, session.done.global_step = epoch + 1, 0, len(history)

    def _validate(self, session: _Session, global_step: int, epoch_end: bool) -> None:
        """Measure the validation loss when due; keep the best weights; count patience."""
        if self.validation is None or len(self.validation) == 0:
            return
        due = (epoch_end and self.eval_every is None
               or self.eval_every is not None and global_step % self.eval_every == 0
               or global_step == session.total_steps)
        if not due:
            return
        loss = validation_loss(session.model, per_sample_loss(session.model, self.loss, self.name),
                               self.validation, self.batch_size, self.seed, session.step.device)
        val = session.done.validation
        val.history.append([global_step, loss])
        if val.best_loss is None or loss < val.best_loss:
            val.best_loss, val.best_step, val.since_best = loss, global_step, 0
            session.best = {k: v.detach().clone() for k, v in session.model.state_dict().items()}
        else:
            val.since_best += 1
            val.stopped = self.patience is not None and val.since_best >= self.patience

    def _step(self, session: _Session, x: torch.Tensor, order: torch.Tensor,
              step: int) -> tuple[float, int]:
        """One optimizer step; returns the batch's loss and the global batch's size."""
        history = session.done.loss_history
        batch = augment_batch(x[session.step.indices(order, step, self.batch_size)],
                              self.augment, self.seed, len(history))
        # Outer loss: per-sample sum over pixels, mean over the batch. Only the optimiser
        # sees the batch mean; each latent depends on its own image.
        count = session.step.global_count(step)
        loss = session.step.loss(batch, count)
        session.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        session.optimizer.step()
        value = session.step.value(loss)
        history.append(value)
        return value, count
