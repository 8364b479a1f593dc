"""Heat-map overlays for ``gonomaly score --overlays``: one PNG per scored image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image

from gonomaly.io import atomic_write_bytes
from gonomaly.scores import MAP_SCORES


def overlay(image: np.ndarray, anomaly_map: np.ndarray, vmax: float) -> np.ndarray:
    """uint8 (H, W, 3): the image (C, H, W) in [0, 1] under a half-transparent 'jet' map
    scaled to [0, vmax]."""
    rgb = np.repeat(image, 3, 0) if image.shape[0] == 1 else image
    heat = colormaps["jet"](np.clip(anomaly_map / max(vmax, 1e-12), 0, 1))[..., :3]
    return (255 * (0.5 * rgb.transpose(1, 2, 0) + 0.5 * heat)).round().astype(np.uint8)


def write_overlays(detector, images: np.ndarray, paths: list[Path], directory: str | Path) -> list[Path]:
    """``directory/<parent>_<stem>_overlay.png`` per image. The colour scale is fixed per run,
    so overlays compare across images: up to the threshold for a map-based score (max, topk;
    full red = at the threshold), else up to 4x the threshold's mean error (mse)."""
    import io

    maps = detector.anomaly_map(images)
    score = getattr(detector, "score", "mse")
    vmax = float(detector.threshold_) * (1 if score in MAP_SCORES else 4)
    if score == "fused" or not vmax > 0:
        vmax = float(np.percentile(maps, 99.9)) or 1.0  # fused: no pixel-scale threshold
    written = []
    for image, anomaly_map, path in zip(images, maps, paths):
        buffer = io.BytesIO()
        Image.fromarray(overlay(image, anomaly_map, vmax)).save(buffer, format="PNG")
        written.append(atomic_write_bytes(Path(directory) / f"{path.parent.name}_{path.stem}_overlay.png",
                                          buffer.getvalue()))
    return written
