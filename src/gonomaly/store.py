"""The run folder: what a fitted detector is on disk, written and read safely.

A run folder holds ``model.safetensors`` (weights), ``train_errors.npy``, ``history.json``,
optionally ``scoring.safetensors`` (a score's fitted state), and ``config.json``, written last,
which records every other file's sha256. ``save_run`` stages the files in ``.saving/`` and
publishes them by renames, holding the folder's ``RunLock``; ``load_run`` verifies every file
against config.json and reads again while a concurrent writer is replacing them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gonomaly.errors import GonomalyError
from gonomaly.integrity import MAX_JSON_BYTES, parse_json, read_bytes, sha256_bytes
from gonomaly.io import fsync_dir, json_bytes, write_synced
from gonomaly.lock import RunLock

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HISTORY_FILE = "history.json"
TRAIN_ERRORS_FILE = "train_errors.npy"
SCORING_FILE = "scoring.safetensors"
STAGING_DIR = ".saving"
CHECKPOINT_FORMAT = "gonomaly-checkpoint/1"
LOAD_ATTEMPTS = 10
T = TypeVar("T")


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
        write_synced(staging / name, data)
    fsync_dir(staging)
    _publish(staging, directory, list(files))


def finish_staged_write(directory: Path) -> None:
    """Complete a staged write that a crash interrupted (when it is complete), else drop it."""
    staging = directory / STAGING_DIR
    if not staging.exists():
        return
    marker = staging / CONFIG_FILE
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



def save_run(directory: str | Path, files: dict[str, bytes], config: dict[str, Any]) -> Path:
    """Write ``files`` and ``config.json`` (with every file's sha256 added by the caller) into
    ``directory`` under its lock; config.json is published last."""
    directory = Path(directory)
    with RunLock(directory):
        write_run_files(directory, {**files, CONFIG_FILE: json_bytes(config)})
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """A run folder's config.json, checked to be a gonomaly configuration."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise GonomalyError(f"{path}: not found (is {directory} a gonomaly run folder?)")
    config = parse_json(read_bytes(path, "configuration", MAX_JSON_BYTES), path)
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
        raise GonomalyError(f"{path}: not a {CHECKPOINT_FORMAT} configuration")
    return config


class FilesChanged(GonomalyError):
    """A run folder's file disagrees with config.json (or is missing): either the folder is
    broken, or a writer is replacing it right now."""

    def __init__(self, message: str, config_id):
        super().__init__(message)
        self.config_id = config_id


class RunReader:
    """The files of one run folder (or its staged ``.saving`` set), each checked against the
    sha256 that config.json records before it is handed out."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.config_path = folder / CONFIG_FILE
        self.config_id = file_identity(self.config_path)
        self.config = read_config(folder)

    def invalid(self, what: str) -> GonomalyError:
        return GonomalyError(f"{self.config_path}: invalid configuration ({what})")

    def verified(self, name: str, digest: Any, what: str) -> bytes:
        path = self.folder / name
        if digest is not None and not isinstance(digest, str):
            raise self.invalid(f"sha256 of {name}")
        if not path.is_file():
            raise FilesChanged(f"{path}: {what} missing", self.config_id)
        data = read_bytes(path, what)
        if digest is not None and sha256_bytes(data) != digest:
            raise FilesChanged(f"{path}: sha256 does not match config.json (modified or truncated)",
                               self.config_id)
        return data


def load_run(directory: str | Path, restore: Callable[[RunReader], T]) -> T:
    """``restore`` applied to the run folder's verified files. Files that disagree because a
    writer is replacing them right now (a newer config.json, or a complete staged set in
    ``.saving/``) are read again, so a concurrent save never breaks a load."""
    directory = Path(directory)
    for attempt in range(LOAD_ATTEMPTS):
        try:
            return restore(RunReader(directory))
        except FilesChanged as exc:
            staged = directory / STAGING_DIR
            if (staged / CONFIG_FILE).is_file():  # a save is being published, or crashed doing so
                try:
                    return restore(RunReader(staged))
                except GonomalyError:
                    pass
            elif file_identity(directory / CONFIG_FILE) == exc.config_id:
                raise GonomalyError(str(exc)) from None  # no writer: the folder is broken
            problem = str(exc)
            time.sleep(0.02 * (attempt + 1))
    raise GonomalyError(f"{problem} (still changing after {LOAD_ATTEMPTS} reads)")
