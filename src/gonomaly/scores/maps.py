"""Per-pixel anomaly maps: the reconstruction error per pixel (squared error or 1 - SSIM) and
its Gaussian smoothing. Every score reads these maps or per-image features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

ERROR_MAPS = ("l2", "ssim")
SSIM_WINDOW = 7


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = SSIM_WINDOW) -> torch.Tensor:
    """Per-pixel SSIM over channels-averaged windows, as scikit-image's defaults (7x7 uniform
    window, sample covariance, data range 1), on the valid interior: (N, H-6, W-6)."""
    def mean(t):
        return F.avg_pool2d(t, window, stride=1)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    n = window * window
    mx, my = mean(x), mean(y)
    vx = (mean(x * x) - mx * mx) * n / (n - 1)
    vy = (mean(y * y) - my * my) * n / (n - 1)
    cxy = (mean(x * y) - mx * my) * n / (n - 1)
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(1)


def ssim_error_map(x: torch.Tensor, x_hat: torch.Tensor, window: int = SSIM_WINDOW) -> torch.Tensor:
    """1 - SSIM per pixel at the input resolution (N, H, W): the windows see a reflected border,
    as in the MVTec paper's SSIM autoencoder (an image's map depends on that image alone)."""
    pad = (window // 2,) * 4
    return 1 - ssim_map(F.pad(x, pad, mode="reflect"), F.pad(x_hat, pad, mode="reflect"), window)


def error_map(x: torch.Tensor, x_hat: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Per-pixel reconstruction error (N, H, W): squared error averaged over channels (``l2``)
    or 1 - SSIM (``ssim``), which sees structure where a plain difference sees only intensity."""
    return ssim_error_map(x, x_hat) if kind == "ssim" else (x_hat - x).pow(2).mean(1)


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of maps (N, H, W), truncated at 4 sigma, reflected border; a
    no-op for sigma = 0. Smoothing lets one noisy pixel count less than a coherent blob."""
    if sigma <= 0:
        return maps
    radius = min(int(4 * sigma + 0.5), min(maps.shape[1:]) - 1)
    t = torch.arange(-radius, radius + 1, dtype=maps.dtype)
    kernel = torch.exp(-t * t / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    out = F.conv2d(F.pad(maps[:, None], (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return out[:, 0]
