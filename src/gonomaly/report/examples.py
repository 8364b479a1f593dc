"""Save the example images that the HTML report needs and cannot rebuild from scores alone.

:func:`save_examples` runs the fitted detector once more on a few chosen test images and writes
``examples.npz`` beside ``metrics.json`` and ``scores.npz``. The report (:mod:`gonomaly.report.html`)
then reads only saved files and never loads a model.

Images are stored for display: (N, H, W) for one channel, (N, H, W, 3) for RGB, float32 in
[0, 1]. Strings are numpy unicode arrays, so the file loads with ``allow_pickle=False``.
Every key is always present (empty arrays where nothing applies), except the optional parts
listed below, which are absent when the detector or the test set does not provide them.

Keys (``K`` = images of that part; ``idx`` are positions in the test set, i.e. in scores.npz):

* ``format`` ("gonomaly-examples/1"), ``model``, ``threshold``, ``seed``, ``per_group``;
* ``grid_*``: ``per_group`` images of each group, normal first — ``grid_images``,
  ``grid_reconstructions``, ``grid_maps`` (per-pixel squared error, (K, H, W)), ``grid_scores``,
  ``grid_groups``, ``grid_ids``, ``grid_idx``;
* ``misses_*``: the most confident misses, anomalous images at or below the threshold, lowest
  score first (up to 8) — ``_images``, ``_reconstructions``, ``_maps``, ``_scores``, ``_groups``,
  ``_ids``, ``_idx``;
* ``false_alarms_*``: the same for normal images above the threshold, highest score first;
* optional ``samples`` (16 images) when the detector has ``sample(n)``;
* optional ``interpolations`` (3, 8, H, W[, 3]) and ``interpolation_ids`` (3, 2) when it has
  ``interpolate(a, b, steps)``;
* optional ``overlay_*`` when the test set has ground-truth ``masks``: ``_images``, ``_maps``,
  ``_masks`` ((K, H, W) uint8, 1 = anomalous), ``_scores``, ``_groups``, ``_ids``, ``_idx``.

Generative hooks (for the GON variants): ``detector.sample(n)`` returns ``n`` images shaped like
the test images, (n, C, H, W); ``detector.interpolate(a, b, steps)`` takes two single test images
(C, H, W) and returns ``steps`` images from ``a`` to ``b``, (steps, C, H, W). Both run under a
torch generator seeded with ``seed``, so the same call gives the same file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gonomaly.data import NORMAL_GROUP, ImageSet
from gonomaly.io import atomic_save_npz

__all__ = [
    "EXAMPLES_FILE",
    "EXAMPLES_FORMAT",
    "N_EXTREMES",
    "N_INTERPOLATIONS",
    "N_INTERPOLATION_STEPS",
    "N_OVERLAYS",
    "N_SAMPLES",
    "save_examples",
]

EXAMPLES_FILE = "examples.npz"
EXAMPLES_FORMAT = "gonomaly-examples/1"
N_EXTREMES = 8  # misses and false alarms, each
N_SAMPLES = 16
N_INTERPOLATIONS = 3
N_INTERPOLATION_STEPS = 8
N_OVERLAYS = 8
RENDER_SCALE = 4  # the implicit GON's renderings at 4x the training resolution
N_RENDERED = 6


def save_examples(detector, test: ImageSet, scores: np.ndarray, directory: str | Path, *,
                  per_group: int = 8, seed: int = 0) -> Path:
    """Write ``directory/examples.npz`` (atomically) and return its path.

    ``scores`` are the detector's per-image scores of ``test`` (``Evaluation.scores``), in the
    same order; the threshold is ``detector.threshold_``. Choices are deterministic for a given
    ``seed``: the same detector, test set and seed give the same file.
    """
    images = np.asarray(test.images)
    if images.ndim != 4:
        raise ValueError(f"save_examples: test images must be (N, C, H, W), got {images.shape}")
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.shape != (len(images),):
        raise ValueError(f"save_examples: {scores.size} scores for {len(images)} test images")
    if per_group < 1:
        raise ValueError(f"save_examples: per_group must be positive, got {per_group}")
    examples = _Examples(detector, images, scores, np.asarray(test.labels).astype(np.int64),
                         np.asarray(test.groups).astype(str), np.asarray(list(test.ids), dtype=str))
    threshold = float(detector.threshold_)
    rng = np.random.default_rng(seed)  # drawn from in this order: grid, interpolations, overlays
    examples.arrays.update({
        "format": np.asarray(EXAMPLES_FORMAT),
        "model": np.asarray(str(getattr(detector, "model_name", type(detector).__name__))),
        "threshold": np.asarray(threshold, dtype=np.float64),
        "seed": np.asarray(seed, dtype=np.int64),
        "per_group": np.asarray(per_group, dtype=np.int64),
    })
    examples.add("grid", _grid_idx(examples.groups, per_group, rng))
    missed, false_alarms = _mistake_idx(examples.labels, scores, threshold)
    examples.add("misses", missed)
    examples.add("false_alarms", false_alarms)
    examples.add_generative(rng, seed)
    examples.add_rendered(_rendered_idx(examples.arrays["grid_idx"], examples.arrays["grid_groups"]))
    masks = getattr(test, "masks", None)
    if masks is not None:
        examples.add_overlays(masks, rng)
    return atomic_save_npz(Path(directory) / EXAMPLES_FILE, **examples.arrays)


@dataclass
class _Examples:
    """The test set, its scores and the arrays chosen so far for examples.npz."""

    detector: Any
    images: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    ids: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, prefix: str, idx: np.ndarray, *, reconstructions: bool = True) -> None:
        """The images at ``idx`` with their maps, scores, groups and ids (and reconstructions)."""
        idx = np.asarray(idx, dtype=np.int64)
        x = self.images[idx]
        self.arrays[f"{prefix}_images"] = _display(x)
        if reconstructions:
            self.arrays[f"{prefix}_reconstructions"] = _display(_run(self.detector.reconstruct, x))
        self.arrays[f"{prefix}_maps"] = _maps(_run(self.detector.anomaly_map, x), x)
        self.arrays[f"{prefix}_scores"] = self.scores[idx]
        self.arrays[f"{prefix}_groups"] = self.groups[idx].astype(str)
        self.arrays[f"{prefix}_ids"] = self.ids[idx].astype(str)
        self.arrays[f"{prefix}_idx"] = idx

    def add_generative(self, rng: np.random.Generator, seed: int) -> None:
        """Samples and interpolations between normal images, for detectors that make them."""
        shape = self.images.shape[1:]
        normal = np.flatnonzero(self.labels == 0)
        if callable(getattr(self.detector, "sample", None)):
            with _seeded(seed):
                samples = np.asarray(self.detector.sample(N_SAMPLES), dtype=np.float32)
            self.arrays["samples"] = _display(samples.reshape((N_SAMPLES, *shape)))
        if callable(getattr(self.detector, "interpolate", None)) and normal.size >= 2:
            pairs = min(N_INTERPOLATIONS, normal.size // 2)
            chosen = rng.choice(normal, size=2 * pairs, replace=False).reshape(pairs, 2)
            rows = []
            with _seeded(seed):
                for a, b in chosen:
                    row = np.asarray(self.detector.interpolate(self.images[a], self.images[b],
                                                               N_INTERPOLATION_STEPS), dtype=np.float32)
                    rows.append(_display(row.reshape((N_INTERPOLATION_STEPS, *shape))))
            self.arrays["interpolations"] = np.stack(rows)
            self.arrays["interpolation_ids"] = self.ids[chosen].astype(str)

    def add_rendered(self, idx: np.ndarray) -> None:
        """For a detector that renders at any size (the implicit GON): images (each pixel
        repeated), reconstructions and anomaly maps at RENDER_SCALE times the resolution."""
        if not getattr(self.detector, "renders_at_any_size", False) or len(idx) == 0:
            return
        x = self.images[idx]
        size = (RENDER_SCALE * x.shape[2], RENDER_SCALE * x.shape[3])
        self.arrays["rendered_images"] = _display(x.repeat(RENDER_SCALE, 2).repeat(RENDER_SCALE, 3))
        self.arrays["rendered_reconstructions"] = _display(self.detector.reconstruct(x, size=size))
        self.arrays["rendered_maps"] = _maps(self.detector.anomaly_map(x, size=size), x)
        self.arrays["rendered_idx"] = idx
        self.arrays["rendered_groups"] = self.groups[idx].astype(str)
        self.arrays["rendered_scores"] = self.scores[idx]

    def add_overlays(self, masks: np.ndarray, rng: np.random.Generator) -> None:
        """Up to :data:`N_OVERLAYS` anomalous images with a non-empty mask, spread over the groups."""
        n = len(self.images)
        masks = np.asarray(masks)
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.shape != (n, *self.images.shape[2:]):
            raise ValueError(f"save_examples: masks have shape {masks.shape}, expected "
                             f"{(n, *self.images.shape[2:])}")
        has_mask = (self.labels == 1) & (masks.reshape(n, -1) > 0).any(axis=1)
        anomaly_groups = [g for g in _group_order(self.groups) if g != NORMAL_GROUP]
        per = max(1, N_OVERLAYS // max(1, len(anomaly_groups)))
        picked = []
        for name in anomaly_groups:
            members = np.flatnonzero(has_mask & (self.groups == name))
            if members.size:
                picked.append(np.sort(rng.choice(members, size=min(per, members.size), replace=False)))
        idx = np.concatenate(picked)[:N_OVERLAYS] if picked else np.zeros(0, np.int64)
        self.add("overlay", idx, reconstructions=False)
        self.arrays["overlay_masks"] = (masks[idx] > 0).astype(np.uint8)


def _rendered_idx(grid_idx: np.ndarray, grid_groups: np.ndarray) -> np.ndarray:
    """Up to N_RENDERED of the grid's images: half normal, half anomalous where there are both."""
    normal = grid_groups == NORMAL_GROUP
    half = N_RENDERED // 2
    anomalous = grid_idx[~normal][:N_RENDERED - min(half, normal.sum())]
    return np.concatenate([grid_idx[normal][:N_RENDERED - len(anomalous)], anomalous])


def _grid_idx(groups: np.ndarray, per_group: int, rng: np.random.Generator) -> np.ndarray:
    """A few images of every group, normal first, then the anomaly groups in test-set order."""
    grid: list[np.ndarray] = []
    for name in _group_order(groups):
        members = np.flatnonzero(groups == name)
        grid.append(np.sort(rng.choice(members, size=min(per_group, members.size), replace=False)))
    return np.concatenate(grid) if grid else np.zeros(0, np.int64)


def _mistake_idx(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The most confident mistakes at the threshold (predicted anomalous means score > threshold):
    misses, lowest score first, and false alarms, highest first; up to :data:`N_EXTREMES` each."""
    n = len(scores)
    order = np.lexsort((np.arange(n), scores))  # ascending score, ties by position
    missed = order[(labels[order] == 1) & (scores[order] <= threshold)][:N_EXTREMES]
    order_desc = np.lexsort((np.arange(n), -scores))
    false_alarms = order_desc[(labels[order_desc] == 0) & (scores[order_desc] > threshold)]
    return missed, false_alarms[:N_EXTREMES]


def _group_order(groups: np.ndarray) -> list[str]:
    """Normal first, then the other groups in order of first appearance."""
    _, first = np.unique(groups, return_index=True)
    names = [str(groups[i]) for i in np.sort(first)]
    return sorted(names, key=lambda g: g != NORMAL_GROUP)


def _run(method, x: np.ndarray) -> np.ndarray:
    """Call a detector method, also on an empty selection (which batching may not accept)."""
    if len(x) == 0:
        return np.zeros((0, *x.shape[1:]), dtype=np.float32)
    return np.asarray(method(x), dtype=np.float32)


def _display(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W) for one channel or (N, H, W, 3) for RGB, float32 in [0, 1]."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 4:
        if x.shape[1] == 1:
            x = x[:, 0]
        elif x.shape[1] == 3:
            x = x.transpose(0, 2, 3, 1)
        else:
            x = x.mean(axis=1)
    return np.ascontiguousarray(np.clip(x, 0.0, 1.0))


def _maps(maps: np.ndarray, x: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 4:  # (N, C, H, W) from a detector that keeps channels
        maps = maps.mean(axis=1)
    if len(x) == 0:
        maps = maps.reshape((0, *x.shape[2:]))
    return np.ascontiguousarray(maps)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a block under fixed torch and numpy seeds, restoring both global generators after."""
    import torch

    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)
