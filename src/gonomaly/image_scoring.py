"""Scoring images where any one may be unreadable: each image gets its own result or its own
error, so one corrupt file never loses the others. ``gonomaly serve`` answers requests with
it, and ``gonomaly score`` reports a folder's unreadable files with it.

Reading and scoring are separate steps (``read_or_error``, then ``score_arrays`` on the stack
of the readable images, then ``combine``) so that a caller can read in one place and score in
another (the server reads in request threads and scores in its batching thread);
``score_images`` does all three in one call.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from gonomaly.data.images import DEFAULT_MAX_PIXELS, image_source, read_image
from gonomaly.errors import GonomalyError
from gonomaly.scores import MAP_SCORES

MSE_OVERLAY_FACTOR = 4  # mse: full red at 4x the threshold's mean error, as ``score --overlays``
DEFAULT_SERVE_MAX_PIXELS = 4096 * 4096  # decoded as float64 RGB: at most ~400 MB per image (gonomaly serve)
RESIZED_DATA_KINDS = ("mvtec", "folder")  # training resized these data kinds' images to the model's size


@dataclass(frozen=True)
class ScoredImage:
    """One readable image: its score, its label (1 = anomalous, score above the threshold)
    and, when asked for, its anomaly map (H, W) and the image itself (C, H, W)."""

    name: str
    score: float
    label: int
    anomaly_map: np.ndarray | None = None
    image: np.ndarray | None = None

    @property
    def decision(self) -> str:
        return "anomalous" if self.label else "normal"

    def to_json(self, key: str = "path") -> dict[str, Any]:
        return {key: self.name, "score": self.score, "label": self.label}


@dataclass(frozen=True)
class FailedImage:
    """One image that could not be scored: ``error`` is the one-line message naming it, and
    ``kind`` a short class of problem (for counting, see ``error_kind``)."""

    name: str
    error: str
    kind: str

    def to_json(self, key: str = "path") -> dict[str, Any]:
        return {key: self.name, "error": self.error}


# What ``read_image``'s messages say, and the kind each counts as; the first match wins.
ERROR_KINDS = (
    ("empty file", "empty_file"),
    ("above the limit", "pixel_limit"),
    ("too large to decode", "pixel_limit"),
    ("nan or inf", "non_finite"),
    ("the model expects", "shape"),
    ("file not found", "not_found"),
    ("cannot read image", "unreadable"),
)


def error_kind(message: str) -> str:
    """A short class of an image error (``empty_file``, ``pixel_limit``, ``non_finite``,
    ``shape``, ``not_found``, ``unreadable``; ``other`` for anything else)."""
    lowered = message.lower()
    return next((kind for text, kind in ERROR_KINDS if text in lowered), "other")


def failure(name: str, message: str) -> FailedImage:
    """The ``FailedImage`` of ``name`` with the one-line ``message``."""
    return FailedImage(name=name, error=message, kind=error_kind(message))


def trained_on_resized_images(run_dir) -> bool:
    """Whether the run in ``run_dir`` was trained on images resized to the model's size (mvtec
    and folder data), so that images to score are resized alike; from its config.json."""
    from gonomaly.store import read_config

    data = read_config(run_dir).get("data")
    return isinstance(data, dict) and data.get("kind") in RESIZED_DATA_KINDS


def image_reader(run_dir, resize: bool | None = None) -> Callable[..., np.ndarray]:
    """The reader of images to score with the run in ``run_dir``: ``data.decode.read_resized``
    with ``resize`` (None: when ``trained_on_resized_images``), else ``data.images.read_image``
    (the model's size exactly). Both take ``(source, image_shape, max_pixels=, name=)``."""
    if resize is None:
        resize = trained_on_resized_images(run_dir)
    if resize:
        from gonomaly.data.decode import read_resized

        return read_resized
    return read_image


def is_empty(source) -> bool:
    """Whether ``source`` (bytes or a path; a file object is not looked at) holds no byte."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source) == 0
    if isinstance(source, (str, os.PathLike)):
        try:
            return os.stat(source).st_size == 0
        except OSError:
            return False  # the reader says what is wrong with it
    return False


def read_checked(source, image_shape: tuple[int, int, int], *, name: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, read: Callable[..., np.ndarray] = read_image) -> np.ndarray:
    """``read(source, image_shape, max_pixels=..., name=...)``'s array (C, H, W); an empty file
    is refused first with its own message (a reader would call it an unidentified image)."""
    if is_empty(source):
        raise GonomalyError(f"{image_source(source, name)[1]}: empty file")
    return read(source, image_shape, max_pixels=max_pixels, name=name)


def read_or_error(source, image_shape: tuple[int, int, int], *, name: str,
                  max_pixels: int = DEFAULT_MAX_PIXELS,
                  read: Callable[..., np.ndarray] = read_image) -> np.ndarray | FailedImage:
    """``read_checked``'s array, or the ``FailedImage`` saying why it cannot be read. Only
    ``GonomalyError`` becomes a ``FailedImage``: anything else is a bug and propagates."""
    try:
        return read_checked(source, image_shape, name=name, max_pixels=max_pixels, read=read)
    except GonomalyError as exc:
        return failure(name, str(exc))


def score_arrays(detector, images: np.ndarray, map_rows=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The scores of ``images`` (N, C, H, W), and the anomaly maps (len(map_rows), H, W) of
    the rows ``map_rows`` (indices or a boolean mask; None or none selected: no maps)."""
    scores = detector.score_samples(images)
    if map_rows is None:
        return scores, None
    selected = images[np.asarray(map_rows)]
    return scores, (detector.anomaly_map(selected) if len(selected) else None)


def combine(names: list[str], decoded: list[np.ndarray | FailedImage], scores: np.ndarray, threshold: float,
            maps: np.ndarray | None = None) -> list[ScoredImage | FailedImage]:
    """Results in input order: ``decoded`` holds each image's array or its ``FailedImage``;
    ``scores`` (and ``maps``, when given) follow the readable ones in order."""
    results: list[ScoredImage | FailedImage] = []
    good = 0
    for name, item in zip(names, decoded):
        if isinstance(item, FailedImage):
            results.append(item)
            continue
        value = float(scores[good])
        results.append(ScoredImage(name=name, score=value, label=int(value > threshold),
                                   anomaly_map=None if maps is None else maps[good],
                                   image=None if maps is None else item))
        good += 1
    return results


def score_images(detector, sources: Iterable[tuple[str, Any]], *, maps: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS,
                 read: Callable[..., np.ndarray] = read_image) -> list[ScoredImage | FailedImage]:
    """Score ``(name, source)`` pairs (a source is a path, bytes or a binary file object, as
    ``read_image`` takes): a ``ScoredImage`` for each readable one, a ``FailedImage`` for
    each other, in input order. With ``maps`` the scored ones carry their anomaly maps."""
    names, decoded = [], []
    for name, source in sources:
        names.append(str(name))
        decoded.append(read_or_error(source, detector.image_shape_, name=str(name),
                                     max_pixels=max_pixels, read=read))
    readable = [item for item in decoded if isinstance(item, np.ndarray)]
    if not readable:
        return combine(names, decoded, np.empty(0), detector.threshold_)
    stack = np.stack(readable)
    scores, anomaly_maps = score_arrays(detector, stack, np.arange(len(stack)) if maps else None)
    return combine(names, decoded, scores, detector.threshold_, anomaly_maps)


def overlay_scale(detector) -> float | None:
    """The anomaly-map value drawn full red in an overlay, from the detector alone so that an
    image's overlay never depends on the images scored with it: the threshold for a map-based
    score (max, topk), 4x the threshold's mean error for mse. None for a score without a
    pixel-scale threshold (fused): then each image is scaled to its own 99.9th percentile.
    (``report.overlays.write_overlays`` scales fused maps over all the images it is given.)"""
    score = getattr(detector, "score", "mse")
    vmax = float(detector.threshold_) * (1 if score in MAP_SCORES else MSE_OVERLAY_FACTOR)
    return None if score == "fused" or not vmax > 0 else vmax


def overlay_png(image: np.ndarray, anomaly_map: np.ndarray, vmax: float | None) -> bytes:
    """The PNG bytes of ``report.overlays.overlay`` for one image (C, H, W) and its map (H, W);
    ``vmax`` None: the map's own 99.9th percentile."""
    from gonomaly.report.overlays import overlay

    if vmax is None:
        vmax = float(np.percentile(anomaly_map, 99.9)) or 1.0
    buffer = io.BytesIO()
    Image.fromarray(overlay(image, anomaly_map, vmax)).save(buffer, format="PNG")
    return buffer.getvalue()
