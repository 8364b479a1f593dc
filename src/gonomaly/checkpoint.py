"""Resumable training checkpoints.

A run folder ``RUN_DIR`` holds, while a training is unfinished, ``RUN_DIR/resume/``:

- ``state.safetensors``: the model weights (``model.*``), Adam's state per parameter
  (``optim.<parameter>.exp_avg``, ``.exp_avg_sq``, ``.step``) and the random states as uint8
  tensors (``rng.torch``: ``torch.get_rng_state()``; ``rng.order``: the batch-order generator's
  state *before* the current epoch's ``torch.randperm``, so that a resumed run recomputes the same
  permutation and skips the batches already done);
- ``progress.json``: epoch, step within the epoch, global step, elapsed seconds, loss history, the
  validation state (the validation losses so far, the best one, its step and the evaluations
  since it), the sha256 of ``state.safetensors`` and the configuration the training was
  started with. The best weights so far are ``best.*`` tensors of ``state.safetensors``.

Nothing is pickled. A checkpoint is written completely into ``RUN_DIR/.resume-new/`` (files
fsynced, ``progress.json`` last), then swapped in by two renames (``resume`` -> ``.resume-old``,
``.resume-new`` -> ``resume``); a crash at any point leaves at least one complete, verifiable
checkpoint, and ``load_checkpoint`` tries ``resume``, ``.resume-new`` and ``.resume-old`` in turn.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_tensors

from gonomaly.errors import GonomalyError
from gonomaly.integrity import (
    MAX_JSON_BYTES,
    check_tensors,
    load_safetensors,
    parse_json,
    read_bytes,
    sha256_bytes,
    tensor_signature,
)
from gonomaly.io import fsync_dir, write_synced

RESUME_DIR = "resume"
NEW_RESUME_DIR = ".resume-new"
OLD_RESUME_DIR = ".resume-old"
STATE_FILE = "state.safetensors"
PROGRESS_FILE = "progress.json"
RESUME_FORMAT = "gonomaly-resume/1"
ADAM_STATE = ("exp_avg", "exp_avg_sq", "step")

@dataclass
class Progress:
    """Where a training stands: ``step`` steps of ``epoch`` (0-based) are done."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    elapsed_s: float = 0.0
    loss_history: list[float] = field(default_factory=list)
    validation: "ValidationProgress" = field(default_factory=lambda: ValidationProgress())


@dataclass
class ValidationProgress:
    """Early stopping's state: ``history`` of [global step, validation loss], the best loss,
    its step, the evaluations since it, and whether patience ran out."""

    history: list[list[float]] = field(default_factory=list)
    best_loss: float | None = None
    best_step: int = 0
    since_best: int = 0
    stopped: bool = False

    def record(self) -> dict[str, Any]:
        return {"history": self.history, "best_loss": self.best_loss, "best_step": self.best_step,
                "since_best": self.since_best, "stopped": self.stopped}

    @classmethod
    def from_record(cls, doc: Any, path: Path) -> "ValidationProgress":
        if doc is None:
            return cls()
        ok = (isinstance(doc, dict) and isinstance(doc.get("history"), list)
              and all(isinstance(e, list) and len(e) == 2 and all(type(v) in (int, float) for v in e)
                      for e in doc["history"])
              and (doc.get("best_loss") is None or type(doc["best_loss"]) in (int, float))
              and type(doc.get("best_step")) is int and type(doc.get("since_best")) is int
              and type(doc.get("stopped")) is bool)
        if not ok:
            raise GonomalyError(f"{path}: invalid checkpoint progress (validation state)")
        return cls([list(e) for e in doc["history"]], doc["best_loss"], doc["best_step"],
                   doc["since_best"], doc["stopped"])


@dataclass
class TrainingState:
    """Everything a training needs to continue exactly where it stopped."""

    progress: Progress
    model: dict[str, torch.Tensor]
    optimizer: dict[str, dict[str, torch.Tensor]]  # parameter name -> Adam state
    torch_rng: torch.Tensor
    order_rng: torch.Tensor
    config: dict[str, Any]
    best: dict[str, torch.Tensor] = field(default_factory=dict)  # the best validation weights

    @classmethod
    def capture(cls, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                order_rng_state: torch.Tensor, progress: Progress,
                config: dict[str, Any], best: dict[str, torch.Tensor] | None = None) -> "TrainingState":
        names = [name for name, _ in model.named_parameters()]
        state = optimizer.state_dict()["state"]
        adam = {names[i]: {k: v.detach().clone() for k, v in s.items()} for i, s in state.items()}
        weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        return cls(progress, weights, adam, torch.get_rng_state(), order_rng_state.clone(), config,
                   {k: v.detach().cpu().contiguous() for k, v in (best or {}).items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"model.{k}": v for k, v in self.model.items()}
        out.update({f"best.{k}": v for k, v in self.best.items()})
        for name, entries in self.optimizer.items():
            out.update({f"optim.{name}.{k}": v.contiguous() for k, v in entries.items()})
        out["rng.torch"] = self.torch_rng.contiguous()
        out["rng.order"] = self.order_rng.contiguous()
        return out

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                order_rng: torch.Generator, path: Path) -> Progress:
        """Load weights, Adam state and both random states, after checking every shape."""
        expected = {f"model.{k}": v for k, v in model.state_dict().items()}
        if self.best:
            expected.update({f"best.{k}": v for k, v in model.state_dict().items()})
        names = [name for name, _ in model.named_parameters()]
        params = dict(model.named_parameters())
        if self.progress.global_step > 0:
            for name in names:
                p = params[name]
                expected.update({f"optim.{name}.exp_avg": p, f"optim.{name}.exp_avg_sq": p,
                                 f"optim.{name}.step": torch.zeros((), dtype=torch.float32)})
        found = tensor_signature({k: v for k, v in self.tensors().items() if not k.startswith("rng.")})
        check_tensors(found, expected, path, "the configured model and optimizer")
        model.load_state_dict(self.model)
        state = optimizer.state_dict()
        state["state"] = {i: dict(self.optimizer[name]) for i, name in enumerate(names)
                          if name in self.optimizer}
        optimizer.load_state_dict(state)
        try:
            torch.set_rng_state(self.torch_rng)
            order_rng.set_state(self.order_rng)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise GonomalyError(f"{path}: invalid random-generator state ({exc})") from None
        return self.progress


def checkpoint_candidates(run_dir: Path) -> list[Path]:
    return [run_dir / RESUME_DIR, run_dir / NEW_RESUME_DIR, run_dir / OLD_RESUME_DIR]


def has_checkpoint(run_dir: str | Path) -> bool:
    return any((d / PROGRESS_FILE).is_file() for d in checkpoint_candidates(Path(run_dir)))


def refuse_checkpoint(run_dir: str | Path) -> None:
    """A fresh training must not overwrite the checkpoint of an interrupted one."""
    if has_checkpoint(run_dir):
        raise GonomalyError(
            f"{run_dir}: holds the checkpoint of an interrupted training; continue it with "
            f"`gonomaly train --resume {shlex.quote(str(run_dir))}`, or delete "
            f"{Path(run_dir) / RESUME_DIR} to start over")


def remove_checkpoint(run_dir: str | Path) -> None:
    for folder in checkpoint_candidates(Path(run_dir)):
        if folder.exists():
            (folder / PROGRESS_FILE).unlink(missing_ok=True)  # invalid first, then removed
            shutil.rmtree(folder, ignore_errors=True)


def save_checkpoint(run_dir: str | Path, state: TrainingState) -> Path:
    """Write ``RUN_DIR/resume`` completely beside the old one, then swap it in (see module doc)."""
    run_dir = Path(run_dir)
    new, current, old = run_dir / NEW_RESUME_DIR, run_dir / RESUME_DIR, run_dir / OLD_RESUME_DIR
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    blob = save_tensors(state.tensors())
    p = state.progress
    progress = {"format": RESUME_FORMAT, "epoch": p.epoch, "step": p.step,
                "global_step": p.global_step, "elapsed_s": round(p.elapsed_s, 6),
                "loss_history": p.loss_history, "validation": p.validation.record(),
                "state_sha256": sha256_bytes(blob),
                "config": state.config}
    write_synced(new / STATE_FILE, blob)
    write_synced(new / PROGRESS_FILE, (json.dumps(progress) + "\n").encode("utf-8"))
    fsync_dir(new)
    if current.exists():
        shutil.rmtree(old, ignore_errors=True)  # ``resume`` is complete: the older one can go
        os.rename(current, old)
    os.rename(new, current)
    fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)
    return current


def read_progress(folder: Path) -> dict[str, Any]:
    """``progress.json`` of one checkpoint folder, every field type-checked."""
    path = folder / PROGRESS_FILE
    doc = parse_json(read_bytes(path, "checkpoint progress", MAX_JSON_BYTES), path)
    if not isinstance(doc, dict) or doc.get("format") != RESUME_FORMAT:
        raise GonomalyError(f"{path}: not a {RESUME_FORMAT} checkpoint")
    ints = ("epoch", "step", "global_step")
    ok = (all(type(doc.get(k)) is int and doc[k] >= 0 for k in ints)
          and type(doc.get("elapsed_s")) in (int, float) and math.isfinite(doc["elapsed_s"])
          and doc["elapsed_s"] >= 0
          and isinstance(doc.get("loss_history"), list)
          and all(type(v) in (int, float) for v in doc["loss_history"])
          and len(doc["loss_history"]) == doc["global_step"]
          and isinstance(doc.get("state_sha256"), str) and isinstance(doc.get("config"), dict))
    if not ok:
        raise GonomalyError(f"{path}: invalid checkpoint progress (fields missing or of the wrong type)")
    return doc


def load_checkpoint(run_dir: str | Path) -> TrainingState:
    """The newest complete checkpoint of ``run_dir``, verified (hash, format, fields, tensors)."""
    run_dir = Path(run_dir)
    errors = []
    for folder in checkpoint_candidates(run_dir):
        if not (folder / PROGRESS_FILE).is_file():
            continue
        try:
            return _load_checkpoint_folder(folder)
        except GonomalyError as exc:
            errors.append(str(exc))
    if errors:
        raise GonomalyError(errors[0])
    raise GonomalyError(f"{run_dir}: no checkpoint to resume ({run_dir / RESUME_DIR / PROGRESS_FILE} not found)")


def _load_checkpoint_folder(folder: Path) -> TrainingState:
    doc = read_progress(folder)
    path = folder / STATE_FILE
    blob = read_bytes(path, "checkpoint state")
    if sha256_bytes(blob) != doc["state_sha256"]:
        raise GonomalyError(f"{path}: sha256 does not match {PROGRESS_FILE} (modified or truncated)")
    tensors = load_safetensors(blob, path)
    model, best, adam, rng = {}, {}, {}, {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind in ("model", "best") and rest:
            (model if kind == "model" else best)[rest] = value
        elif kind == "optim" and rest.rpartition(".")[2] in ADAM_STATE:
            name, _, entry = rest.rpartition(".")
            adam.setdefault(name, {})[entry] = value
        elif kind == "rng" and rest in ("torch", "order") and value.dtype == torch.uint8 and value.dim() == 1:
            rng[rest] = value
        else:
            raise GonomalyError(f"{path}: unexpected tensor '{key[:80]}'")
    if set(rng) != {"torch", "order"}:
        raise GonomalyError(f"{path}: random-generator states missing")
    progress = Progress(doc["epoch"], doc["step"], doc["global_step"], float(doc["elapsed_s"]),
                        [float(v) for v in doc["loss_history"]],
                        ValidationProgress.from_record(doc.get("validation"), folder / PROGRESS_FILE))
    return TrainingState(progress, model, adam, rng["torch"], rng["order"], doc["config"], best)


class Checkpointer:
    """Writes the checkpoints of one training: every ``every`` steps, every ``minutes`` minutes,
    and when asked (on a stop signal)."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], every: int | None = None,
                 minutes: float | None = None):
        if every is not None and (type(every) is not int or every < 1):
            raise GonomalyError(f"checkpoint_every must be a positive number of steps, got {every!r}")
        if minutes is not None and not (isinstance(minutes, (int, float)) and minutes > 0):
            raise GonomalyError(f"checkpoint_minutes must be positive, got {minutes!r}")
        self.run_dir = Path(run_dir)
        self.config = config
        self.every = every
        self.minutes = minutes
        self._last = time.monotonic()

    def due(self, global_step: int) -> bool:
        if self.every is not None and global_step % self.every == 0:
            return True
        return self.minutes is not None and time.monotonic() - self._last >= 60 * self.minutes

    def save(self, state: TrainingState) -> Path:
        path = save_checkpoint(self.run_dir, state)
        self._last = time.monotonic()
        return path

    def load(self) -> TrainingState:
        state = load_checkpoint(self.run_dir)
        mismatched = [k for k in sorted(set(self.config) | set(state.config))
                      if k != "metadata" and self.config.get(k) != state.config.get(k)]
        if mismatched:
            key = mismatched[0]
            raise GonomalyError(
                f"{self.run_dir / RESUME_DIR}: the checkpoint was made with {key} = "
                f"{state.config.get(key)!r}, this training has {self.config.get(key)!r}")
        return state
