"""Checking and normalising the image arrays that the detectors take."""

from __future__ import annotations

import numpy as np
import torch

from gonomaly.errors import GonomalyError


def as_image_array(images, name: str = "images") -> np.ndarray:
    """Return float32 (N, C, H, W) in [0, 1] from (N, H, W) or (N, C, H, W), uint8 or float.

    Floats must already lie in [0, 1]; NaN, inf and out-of-range values are refused rather than
    clipped, because a silently repaired input would get a meaningless score.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise GonomalyError(
            f"{name}: expected shape (N, H, W) or (N, C, H, W) with C = 1 or 3, got {array.shape}"
        )
    if array.shape[0] == 0:
        raise GonomalyError(f"{name}: no images")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise GonomalyError(f"{name}: unsupported dtype {array.dtype} (use uint8 or float in [0, 1])")
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if not finite.all():
        raise GonomalyError(f"{name}: image {int(np.argmin(finite))} contains NaN or inf values")
    low, high = float(array.min()), float(array.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise GonomalyError(f"{name}: float pixels must lie in [0, 1], found [{low:.3g}, {high:.3g}]")
    return np.clip(array, 0.0, 1.0)


def unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1] (divided by 255, the same shape)."""
    return images.astype(np.float32) / np.float32(255.0)
