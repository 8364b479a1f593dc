"""The implicit GON: a SIREN F(c, z) maps a pixel coordinate c and a latent z to the pixel value.

As in the original work: sine activations with w0 = 30, first-layer weights uniform in
(-1/in, 1/in), later layers uniform in (-sqrt(6/in)/w0, sqrt(6/in)/w0), widths
[2 + latent, 256, 256, 256, 256, channels], coordinates in [-1, 1]. A sigmoid maps the output
to [0, 1] like the other models. Because F is a function of the coordinates, a latent renders
on any grid: ``decode(z, size=112)`` draws a 28x28 digit's latent at four times its resolution.

Training speed (see ``benchmarks/bench_implicit.py``): the gradient-origin step's F(0) and J
come from one backward pass per channel instead of forward mode's one pass per latent dimension;
the hidden layers' matrix products may run in bfloat16 (``training_precision="bf16"``; the first
layer's phase w0 (W [c; z] + b), the gradient-origin step and the losses stay float32); and the
outer loss may be evaluated on a random subset of each image's pixels
(``coordinate_fraction``), scaled so that its expectation is the full squared error.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

from gonomaly.models.gon import GradientOriginNetwork

W0 = 30.0
CHUNK_ROWS = 1 << 16  # (image, pixel) rows per chunk: 64 MB per 256-wide activation
TRAINING_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


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


def sized(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from a side or a pair."""
    return (size, size) if isinstance(size, int) else tuple(size)


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

    def coordinate_part(self, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """W_c c + b for every pixel of the grid, (H * W, width)."""
        height, width = (self.height, self.width_px) if size is None else sized(size)
        first = self.layers[0]
        coords = fourier_encoding(coordinate_grid(height, width).to(first.weight), self.fourier_features)
        return coords @ first.weight[:, :self.coord_dim].T + first.bias

    def latent_part(self, z: torch.Tensor) -> torch.Tensor:
        """W_z z, (B, width)."""
        return z @ self.layers[0].weight[:, self.coord_dim:].T

    def trunk(self, first: torch.Tensor, hidden_dtype: torch.dtype | None = None) -> torch.Tensor:
        """The network from the first layer's pre-activation a (..., width) to the output before
        the sigmoid (..., C). The phase w0 a is always float32 (an error of 2^-9 in a would
        move it by up to w0 times as much); with ``hidden_dtype`` the hidden layers' matrix
        products run in that type and their results are cast back."""
        h = torch.sin(W0 * first)
        for layer in self.layers[1:-1]:
            if hidden_dtype is None:
                h = torch.sin(W0 * layer(h))
            else:
                product = functional.linear(h.to(hidden_dtype), layer.weight.to(hidden_dtype))
                h = torch.sin(W0 * (product.float() + layer.bias))
        return self.layers[-1](h)

    def forward(self, z: torch.Tensor, size: int | tuple[int, int] | None = None,
                hidden_dtype: torch.dtype | None = None) -> torch.Tensor:
        height, width = (self.height, self.width_px) if size is None else sized(size)
        coordinate_part = self.coordinate_part((height, width))  # (P, width)
        latent_part = self.latent_part(z)                          # (B, width)
        rows = coordinate_part.shape[0]
        # Bounded memory on big grids; an exported graph has a symbolic batch, so no chunks.
        chunk = rows if torch.compiler.is_exporting() else max(1, CHUNK_ROWS // max(1, z.shape[0]))
        pieces = [self.trunk(coordinate_part[None, start:start + chunk] + latent_part[:, None],
                             hidden_dtype) for start in range(0, rows, chunk)]
        out = torch.sigmoid(torch.cat(pieces, 1))  # (B, P, C)
        return out.transpose(1, 2).reshape(z.shape[0], self.channels, height, width)

    def at_pixels(self, z: torch.Tensor, pixels: torch.Tensor,
                  hidden_dtype: torch.dtype | None = None) -> torch.Tensor:
        """F(c_p, z_b) at the training grid's pixels ``pixels`` (B, K) of each image: (B, K, C)."""
        first = self.coordinate_part()[pixels] + self.latent_part(z)[:, None]
        return torch.sigmoid(self.trunk(first, hidden_dtype))

    def origin_linearisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """F(0) flattened (C * P,) and J = dF/dz at 0 (C * P, Z) on the training grid,
        differentiable in the weights. z enters only through W_z z, and pixels do not mix, so
        J's rows are (dF_p / da_p) W_z: one backward pass per channel, where forward mode
        (``gonomaly.models.gon.origin_linearisation``) costs one pass per latent dimension."""
        with torch.enable_grad():
            first = self.coordinate_part()
            if not first.requires_grad:  # frozen weights: J still needs dF/da
                first = first.detach().requires_grad_()
            image = torch.sigmoid(self.trunk(first))  # (P, C)
            latent_weight = self.layers[0].weight[:, self.coord_dim:]
            rows = [torch.autograd.grad(image[:, c].sum(), first, create_graph=True)[0] @ latent_weight
                    for c in range(self.channels)]
        return image.T.reshape(-1), torch.cat(rows)


class ImplicitGON(GradientOriginNetwork):
    """The implicit GON: the gradient-origin step through a SIREN over the pixel coordinates.

    ``coordinate_fraction`` < 1 evaluates the outer loss on that fraction of each image's pixels
    (drawn from the global generator, which the trainer seeds and checkpoints keep), times
    1 / fraction; ``training_precision="bf16"`` runs the hidden layers' products in bfloat16
    during training. Neither changes the gradient-origin step (always float32 over every pixel)
    or scoring."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 32, width: int = 256,
                 fourier_features: int = 0, coordinate_fraction: float = 1.0,
                 training_precision: str = "fp32"):
        super().__init__(latent_dim)
        self.decoder = SirenDecoder(image_shape, latent_dim, width, fourier_features=fourier_features)
        self.coordinate_fraction = coordinate_fraction
        self.hidden_dtype = TRAINING_PRECISIONS[training_precision]

    def origin_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, jacobian = self.decoder.origin_linearisation()
        return image, jacobian, torch.zeros(self.latent_dim, device=image.device)

    def decode(self, z: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        return self.decoder(z, size)

    def training_reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.closed_form_latent(x), hidden_dtype=self.hidden_dtype)

    def sampled_pixels(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """(B, K) distinct pixels per image for the outer loss; None for all of them."""
        pixels = self.decoder.height * self.decoder.width_px
        count = max(1, round(self.coordinate_fraction * pixels))
        if count >= pixels:
            return None
        return torch.rand(batch, pixels, device=device).argsort(1)[:, :count]

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample squared error summed over pixels, estimated on ``coordinate_fraction`` of
        them (an unbiased estimate: the sampled sum times pixels / sampled)."""
        pixels = self.sampled_pixels(x.shape[0], x.device)
        if pixels is None:
            return (self.training_reconstruction(x) - x).pow(2).flatten(1).sum(1)
        z = self.closed_form_latent(x)
        target = x.flatten(2).transpose(1, 2).gather(1, pixels[..., None].expand(-1, -1, x.shape[1]))
        error = (self.decoder.at_pixels(z, pixels, self.hidden_dtype) - target).pow(2).flatten(1).sum(1)
        return error * (x[0, 0].numel() / pixels.shape[1])
