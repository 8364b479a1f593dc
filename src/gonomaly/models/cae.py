"""The reference notebooks' convolutional autoencoder baseline: a separate encoder and decoder."""

from __future__ import annotations

import torch
from torch import nn


def _grown(channels: int, side: int, latent_dim: int, width: int) -> tuple[nn.Module, nn.Module]:
    """For square power-of-two sides >= 32 (RGB industrial images): stride-2 convolutions down
    to 8x8, doubling the width (at most 8x), then a real bottleneck, an 8x8 convolution to a
    latent vector (as in the MVTec paper's autoencoder); the decoder mirrors it. No BatchNorm,
    so an image's reconstruction depends on that image alone."""
    stages = side.bit_length() - 4  # side == 8 * 2**stages
    widths = [min(width << i, 8 * width) for i in range(stages)]
    encoder, decoder = [], []
    for in_ch, out_ch in zip([channels] + widths, widths):
        encoder += [nn.Conv2d(in_ch, out_ch, 4, 2, 1), nn.LeakyReLU(0.2)]
    encoder.append(nn.Conv2d(widths[-1], latent_dim, 8))  # (B, Z, 1, 1)
    decoder += [nn.ConvTranspose2d(latent_dim, widths[-1], 8), nn.LeakyReLU(0.2)]
    for in_ch, out_ch in zip(widths[::-1], widths[::-1][1:]):
        decoder += [nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1), nn.LeakyReLU(0.2)]
    decoder += [nn.ConvTranspose2d(widths[0], channels, 4, 2, 1), nn.Sigmoid()]
    return nn.Sequential(*encoder), nn.Sequential(*decoder)


class CAE(nn.Module):
    """Conv C -> 32 -> 64 with 2x2 max-pooling, a transposed-conv decoder back, sigmoid output
    (the reference notebooks' model, for 28x28 and any size that is not a square power of two >= 32); larger
    square power-of-two images get the deeper model of ``_grown`` with a ``latent_dim`` vector."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 100, width: int = 32):
        super().__init__()
        channels, height, width_px = image_shape
        if height == width_px and height >= 32 and height & (height - 1) == 0:
            self.encoder, self.decoder = _grown(channels, height, latent_dim, width)
            return
        if height % 4 or width_px % 4:
            raise ValueError(f"CAE needs sides divisible by 4, got {height}x{width_px}")
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 2, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 2, stride=2), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def training_reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        return (self(x) - x).pow(2).flatten(1).sum(1)
