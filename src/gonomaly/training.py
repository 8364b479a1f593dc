"""Resumable training: checkpoints, stop signals, and one writer per run folder.

A run folder ``RUN_DIR`` holds, while a training is unfinished, ``RUN_DIR/resume/``:

- ``state.safetensors``: the model weights (``model.*``), Adam's state per parameter
  (``optim.<parameter>.exp_avg``, ``.exp_avg_sq``, ``.step``) and the random states as uint8
  tensors (``rng.torch``: ``torch.get_rng_state()``; ``rng.order``: the batch-order generator's
  state *before* the current epoch's ``torch.randperm``, so that a resumed run recomputes the same
  permutation and skips the batches already done);
- ``progress.json``: epoch, step within the epoch, global step, elapsed seconds, loss history, the
  sha256 of ``state.safetensors`` and the configuration the training was started with.

Nothing is pickled. A checkpoint is written completely into ``RUN_DIR/.resume-new/`` (files
fsynced, ``progress.json`` last), then swapped in by two renames (``resume`` -> ``.resume-old``,
``.resume-new`` -> ``resume``); a crash at any point leaves at least one complete, verifiable
checkpoint, and ``load_checkpoint`` tries ``resume``, ``.resume-new`` and ``.resume-old`` in turn.

``RunLock`` lets one process at a time write a run folder: ``fcntl.flock`` on ``RUN_DIR/.lock``,
non-blocking, held on an open descriptor for the whole run (the kernel releases it if the process
dies). ``StopSignals`` turns SIGINT and SIGTERM into a flag that the training loop checks after
each optimizer step. ``write_run_files`` is the crash-safe writer of the final run folder.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from gonomaly.errors import GonomalyError, TrainingInterrupted

RESUME_DIR = "resume"
NEW_RESUME_DIR = ".resume-new"
OLD_RESUME_DIR = ".resume-old"
STATE_FILE = "state.safetensors"
PROGRESS_FILE = "progress.json"
RESUME_FORMAT = "gonomaly-resume/1"
LOCK_FILE = ".lock"
STAGING_DIR = ".saving"
MAX_JSON_BYTES = 64 << 20
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit
ADAM_STATE = ("exp_avg", "exp_avg_sq", "step")
SAFETENSORS_DTYPES = {
    torch.float64: ("F64", 8), torch.float32: ("F32", 4), torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2), torch.int64: ("I64", 8), torch.int32: ("I32", 4),
    torch.int16: ("I16", 2), torch.int8: ("I8", 1), torch.uint8: ("U8", 1), torch.bool: ("BOOL", 1),
}
ITEM_SIZES = {name: size for name, size in SAFETENSORS_DTYPES.values()} | {
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


# -- interruption ------------------------------------------------------------------------------
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


# -- one writer per run folder -----------------------------------------------------------------
_HELD: dict[str, list] = {}  # real path of RUN_DIR -> [fd, count, created]
_HELD_GUARD = threading.Lock()


class RunLock:
    """Exclusive, non-blocking ``flock`` on ``RUN_DIR/.lock`` for one writer process.

    Re-entrant within a process (a CLI command holding it may call ``save``, which takes it
    too). A second process fails at once with ``RUN_DIR: in use by another gonomaly process
    (pid N)``. On release the lock file is removed (and the folder, if this lock created it and
    it stayed empty); a waiting opener re-checks the inode, so removal cannot split the lock.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._key: str | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> bool:
        self.release()
        return False

    def acquire(self) -> None:
        created = not self.run_dir.exists()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GonomalyError(f"{self.run_dir}: cannot create run folder ({exc.strerror or exc})") from None
        key = os.path.realpath(self.run_dir)
        with _HELD_GUARD:
            if key in _HELD:
                _HELD[key][1] += 1
                self._key = key
                return
            fd = self._lock(self.run_dir / LOCK_FILE)
            _HELD[key] = [fd, 1, created]
            self._key = key

    def _lock(self, path: Path) -> int:
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise GonomalyError(f"{self.run_dir}: cannot create lock file ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                pid = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise GonomalyError(
                        f"{self.run_dir}: in use by another gonomaly process (pid {pid})") from None
                raise GonomalyError(f"{self.run_dir}: cannot lock ({exc.strerror or exc})") from None
            try:  # the previous holder may have removed the file between our open and flock
                current = os.stat(path)
                mine = os.fstat(fd)
                same = (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev)
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _HELD_GUARD:
            entry = _HELD[key]
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _HELD[key]
        fd, _, created = entry
        path = self.run_dir / LOCK_FILE
        try:
            if (os.stat(path).st_ino, os.stat(path).st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev):
                path.unlink()
        except OSError:
            pass
        os.close(fd)
        if created:
            try:
                self.run_dir.rmdir()  # only succeeds if nothing was written
            except OSError:
                pass


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


# -- files -------------------------------------------------------------------------------------
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def read_bytes(path: Path, what: str, limit: int | None = None) -> bytes:
    """A whole file, with one clear error; ``limit`` refuses files larger than that."""
    try:
        with open(path, "rb") as handle:
            if limit is not None and os.fstat(handle.fileno()).st_size > limit:
                raise GonomalyError(f"{path}: {what} is implausibly large (over {limit} bytes)")
            return handle.read()
    except FileNotFoundError:
        raise GonomalyError(f"{path}: {what} missing") from None
    except IsADirectoryError:
        raise GonomalyError(f"{path}: {what} is a folder") from None
    except OSError as exc:
        raise GonomalyError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def parse_json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise GonomalyError(f"{path}: not valid JSON ({str(exc).splitlines()[0][:200]})") from None


def safetensors_header(data: bytes, path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Check a safetensors file's header against its size BEFORE anything is allocated;
    return ``{name: (dtype, shape)}``. A header that claims more bytes than the file holds, a
    tensor whose size disagrees with its offsets, or overlapping data is refused."""
    if len(data) < 8:
        raise GonomalyError(f"{path}: not a safetensors file ({len(data)} bytes)")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8 or size > MAX_SAFETENSORS_HEADER:
        raise GonomalyError(f"{path}: safetensors header claims {size} bytes, the file has {len(data)}")
    header = parse_json(data[8:8 + size], path)
    if not isinstance(header, dict):
        raise GonomalyError(f"{path}: safetensors header is not a JSON object")
    body = len(data) - 8 - size
    tensors, spans = {}, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            valid = (isinstance(dtype, str) and dtype in ITEM_SIZES and isinstance(shape, list)
                     and all(type(d) is int and d >= 0 for d in shape)
                     and type(begin) is int and type(end) is int and 0 <= begin <= end <= body)
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid or math.prod(shape) * ITEM_SIZES[dtype] != end - begin:
            raise GonomalyError(f"{path}: safetensors entry '{name[:80]}' is invalid")
        tensors[name] = (dtype, tuple(shape))
        spans.append((begin, end))
    spans.sort()
    if any(a_end > b_begin for (_, a_end), (b_begin, _) in zip(spans, spans[1:])):
        raise GonomalyError(f"{path}: safetensors tensors overlap")
    return tensors


def load_safetensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    safetensors_header(data, path)
    try:
        return load_tensors(data)
    except (SafetensorError, ValueError, TypeError, RuntimeError) as exc:
        raise GonomalyError(f"{path}: cannot read safetensors ({exc})") from None


def check_tensors(found: dict[str, tuple[str, tuple[int, ...]]], expected: dict[str, torch.Tensor],
                  path: Path, what: str) -> None:
    """Refuse a file whose tensor names, dtypes or shapes differ from ``expected``."""
    wanted = {k: (SAFETENSORS_DTYPES.get(v.dtype, ("?", 0))[0], tuple(v.shape)) for k, v in expected.items()}
    if wanted != found:
        diff = sorted(set(wanted.items()) ^ set(found.items()), key=str)[:3]
        raise GonomalyError(f"{path}: tensors do not match {what} (e.g. {diff})")


# -- the final run folder ----------------------------------------------------------------------
def write_run_files(directory: Path, files: dict[str, bytes]) -> None:
    """Write a run folder's files so that no crash and no concurrent reader ever sees a mix.

    The files (the last one, config.json, records the others' hashes) go completely into
    ``directory/.saving/`` first; then each is hard-linked into place by an atomic rename, the
    last one last; then ``.saving`` is removed. A loader that finds files disagreeing with
    config.json uses the complete ``.saving`` set; the next writer rolls such a set forward.
    """
    staging = directory / STAGING_DIR
    finish_staged_write(directory)
    staging.mkdir(parents=True)
    for name, data in files.items():
        _write_synced(staging / name, data)
    fsync_dir(staging)
    _publish(staging, directory, list(files))


def finish_staged_write(directory: Path) -> None:
    """Complete a staged write that a crash interrupted (when it is complete), else drop it."""
    staging = directory / STAGING_DIR
    if not staging.exists():
        return
    marker = staging / "config.json"
    if marker.is_file():
        names = sorted(p.name for p in staging.iterdir() if p.is_file() and p.name != marker.name)
        _publish(staging, directory, names + [marker.name])
    else:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, directory: Path, names: list[str]) -> None:
    for name in names:
        tmp = directory / f".{name}.link"
        tmp.unlink(missing_ok=True)
        try:
            os.link(staging / name, tmp)
        except OSError:  # a file system without hard links: copy instead
            shutil.copyfile(staging / name, tmp)
        os.replace(tmp, directory / name)
    fsync_dir(directory)
    (staging / names[-1]).unlink(missing_ok=True)  # the set is no longer complete: drop it first
    shutil.rmtree(staging, ignore_errors=True)


def file_identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_mtime_ns)


# -- resumable checkpoints ---------------------------------------------------------------------
@dataclass
class Progress:
    """Where a training stands: ``step`` steps of ``epoch`` (0-based) are done."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    elapsed_s: float = 0.0
    loss_history: list[float] = field(default_factory=list)


@dataclass
class TrainingState:
    """Everything a training needs to continue exactly where it stopped."""

    progress: Progress
    model: dict[str, torch.Tensor]
    optimizer: dict[str, dict[str, torch.Tensor]]  # parameter name -> Adam state
    torch_rng: torch.Tensor
    order_rng: torch.Tensor
    config: dict[str, Any]

    @classmethod
    def capture(cls, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                order_rng_state: torch.Tensor, progress: Progress,
                config: dict[str, Any]) -> "TrainingState":
        names = [name for name, _ in model.named_parameters()]
        state = optimizer.state_dict()["state"]
        adam = {names[i]: {k: v.detach().clone() for k, v in s.items()} for i, s in state.items()}
        weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        return cls(progress, weights, adam, torch.get_rng_state(), order_rng_state.clone(), config)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"model.{k}": v for k, v in self.model.items()}
        for name, entries in self.optimizer.items():
            out.update({f"optim.{name}.{k}": v.contiguous() for k, v in entries.items()})
        out["rng.torch"] = self.torch_rng.contiguous()
        out["rng.order"] = self.order_rng.contiguous()
        return out

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                order_rng: torch.Generator, path: Path) -> Progress:
        """Load weights, Adam state and both random states, after checking every shape."""
        expected = {f"model.{k}": v for k, v in model.state_dict().items()}
        names = [name for name, _ in model.named_parameters()]
        params = dict(model.named_parameters())
        if self.progress.global_step > 0:
            for name in names:
                p = params[name]
                expected.update({f"optim.{name}.exp_avg": p, f"optim.{name}.exp_avg_sq": p,
                                 f"optim.{name}.step": torch.zeros((), dtype=torch.float32)})
        found = {k: (SAFETENSORS_DTYPES.get(v.dtype, ("?", 0))[0], tuple(v.shape))
                 for k, v in self.tensors().items() if not k.startswith("rng.")}
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
                "loss_history": p.loss_history, "state_sha256": sha256_bytes(blob),
                "config": state.config}
    _write_synced(new / STATE_FILE, blob)
    _write_synced(new / PROGRESS_FILE, (json.dumps(progress) + "\n").encode("utf-8"))
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


def read_checkpoint_config(run_dir: str | Path) -> dict[str, Any]:
    """The configuration an interrupted training was started with (from its newest valid
    checkpoint): model, hyper-parameters, data fingerprint and the caller's metadata."""
    return load_checkpoint(run_dir).config


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
    model, adam, rng = {}, {}, {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "model" and rest:
            model[rest] = value
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
                        [float(v) for v in doc["loss_history"]])
    return TrainingState(progress, model, adam, rng["torch"], rng["order"], doc["config"])


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
