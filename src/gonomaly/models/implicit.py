"""The implicit GON: a SIREN F(c, z) maps a pixel coordinate c and a latent z to the pixel value.

As in the original work: sine activations with w0 = 30, first-layer weights uniform in
(-1/in, 1/in), later layers uniform in (-sqrt(6/in)/w0, sqrt(6/in)/w0), widths
[2 + latent, 256, 256, 256, 256, channels], coordinates in [-1, 1]. A sigmoid maps the output
to [0, 1] like the other models. Because F is a function of the coordinates, a latent renders
on any grid: ``decode(z, size=56)`` draws the image at twice the resolution of 28x28 digits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gonomaly.models.gon import GradientOriginNetwork

W0 = 30.0
CHUNK_ROWS = 1 << 16  # (image, pixel) rows per chunk: 64 MB per 256-wide activation


def coordinate_grid(height: int, width: int) -> torch.Tensor:
    """(H * W, 2) coordinates (y, x) in [-1, 1], row-major like the image's pixels."""
    ys, xs = torch.linspace(-1, 1, height), torch.linspace(-1, 1, width)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)


def fourier_encoding(coords: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[c, sin(2^k pi c), cos(2^k pi c)] for k < frequencies (no random matrix: nothing to store)."""
    if frequencies == 0:
        return coords
    scales = math.pi * 2.0 ** torch.arange(frequencies, dtype=coords.dtype)
    angles = (coords[:, :, None] * scales).flatten(1)
    return torch.cat([coords, angles.sin(), angles.cos()], 1)


class SirenDecoder(nn.Module):
    """F: latent (B, Z) -> image (B, C, H, W), rendered on an H x W grid (the training size by
    default). The first layer W [c; z] + b is split as (W_c c + b) + W_z z: the coordinate part is
    computed once per grid and broadcast over the batch, the latent part once per image."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32, width: int = 256,
                 depth: int = 4, fourier_features: int = 0):
        super().__init__()
        self.channels, self.height, self.width_px = image_shape
        self.fourier_features = fourier_features
        coord_dim = 2 + 4 * fourier_features
        self.coord_dim = coord_dim
        widths = [coord_dim + latent_dim] + [width] * depth + [self.channels]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                bound = 1 / layer.in_features if i == 0 else math.sqrt(6 / layer.in_features) / W0
                layer.weight.uniform_(-bound, bound)

    def forward(self, z: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        height, width = (self.height, self.width_px) if size is None else (
            (size, size) if isinstance(size, int) else size)
        coords = fourier_encoding(coordinate_grid(height, width).to(z), self.fourier_features)
        first = self.layers[0]
        coordinate_part = coords @ first.weight[:, :self.coord_dim].T + first.bias  # (P, width)
        latent_part = z @ first.weight[:, self.coord_dim:].T                          # (B, width)
        chunk = max(1, CHUNK_ROWS // max(1, z.shape[0]))
        pieces = []
        for start in range(0, coordinate_part.shape[0], chunk):  # bounded memory on big grids
            h = torch.sin(W0 * (coordinate_part[None, start:start + chunk] + latent_part[:, None]))
            for layer in self.layers[1:-1]:
                h = torch.sin(W0 * layer(h))
            pieces.append(self.layers[-1](h))
        out = torch.sigmoid(torch.cat(pieces, 1))  # (B, P, C)
        return out.transpose(1, 2).reshape(z.shape[0], self.channels, height, width)


class ImplicitGON(GradientOriginNetwork):
    """The implicit GON: the gradient-origin step through a SIREN over the pixel coordinates."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32, width: int = 256,
                 fourier_features: int = 0):
        super().__init__(latent_dim)
        self.decoder = SirenDecoder(image_shape, latent_dim, width, fourier_features=fourier_features)

    def decode(self, z: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        return self.decoder(z, size)
