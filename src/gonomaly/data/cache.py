"""The user cache folder, and the decode cache: the decoded, resized arrays of a list of image
files, keyed by every file's path, size and mtime and the image size, so the 900x900 PNGs of
MVTec AD are decoded once. A broken cache file is rebuilt; a read-only cache only costs time."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gonomaly.data.decode import decode_resized
from gonomaly.errors import GonomalyError
from gonomaly.io import atomic_save_npz

log = logging.getLogger("gonomaly")
PROGRESS_FROM = 50  # images: fewer decode too fast for a progress bar


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gonomaly``, else ``~/.cache/gonomaly``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gonomaly"


def decoded_cache_path(files: list[Path], size: int, channels: int) -> Path:
    """Where the decoded arrays of ``files`` at this size and channel count are cached."""
    key = hashlib.sha256(json.dumps([size, channels] + [
        [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]).encode()).hexdigest()
    return cache_dir() / "images" / f"{key[:32]}.npz"


def _read_cached(cache: Path, n_images: int, with_masks: bool) -> tuple[np.ndarray, np.ndarray | None] | None:
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as saved:
            out = saved["images"], (saved["masks"] if with_masks else None)
        if len(out[0]) == n_images:
            return out
    except (OSError, ValueError, KeyError):
        pass  # a broken cache file is rebuilt
    return None


def _decode_all(images: list[Path], masks: list[Path | None] | None, size: int, channels: int,
                desc: str) -> tuple[np.ndarray, np.ndarray | None]:
    decoded, mask_arrays = [], []
    quiet = len(images) < PROGRESS_FROM or not log.isEnabledFor(logging.INFO)
    for i, path in enumerate(tqdm(images, desc=desc, unit="img", leave=False, disable=quiet)):
        array, original = decode_resized(path, size, channels)
        decoded.append(array)
        if masks is not None:
            mask = masks[i]
            mask_arrays.append(np.zeros((size, size), np.uint8) if mask is None
                               else decode_resized(mask, size, 1, expect=original)[0])
    return np.stack(decoded), (np.stack(mask_arrays) if masks is not None else None)


def decode_files(images: list[Path], masks: list[Path | None] | None, size: int, channels: int,
                 desc: str) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 images (N, C, S, S) and masks (N, S, S) (zeros where None); cached."""
    listed = images + [m for m in masks or [] if m is not None]
    for path in listed:
        if not path.is_file():
            raise GonomalyError(f"{path}: file not found")
    cache = decoded_cache_path(listed, size, channels)
    cached = _read_cached(cache, len(images), masks is not None)
    if cached is not None:
        return cached
    result = _decode_all(images, masks, size, channels, desc)
    try:
        arrays = {"images": result[0]} | ({"masks": result[1]} if masks is not None else {})
        atomic_save_npz(cache, **arrays)
    except OSError as exc:  # a read-only cache only costs time
        log.info("could not cache decoded images in %s (%s)", cache, exc)
    return result
