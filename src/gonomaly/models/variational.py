"""The variational GON and its conventional counterpart, a VAE with a separate encoder.

Variational GON (Bond-Taylor & Willcocks): the gradient-origin latent z feeds two linear heads,
the posterior mean mu(z) and log-variance s(z); training decodes a reparameterised sample
mu + eps * exp(s / 2) and adds the KL divergence to N(0, I) to the per-sample squared error.
"""

from __future__ import annotations

import torch
from torch import nn

from gonomaly.models.gon import ConvGONDecoder, GradientOriginNetwork


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(N(mean, exp(logvar)) || N(0, I))."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1).sum(1)


def _elbo_loss(decoded: torch.Tensor, x: torch.Tensor, mean, logvar) -> torch.Tensor:
    return (decoded - x).pow(2).flatten(1).sum(1) + gaussian_kl(mean, logvar)


def _reparameterise(mean, logvar, noise: torch.Tensor | None):
    # The noise comes from torch's global generator, which the training loop seeds and a resume
    # checkpoint restores, so a resumed training stays bit-identical.
    noise = torch.randn_like(mean) if noise is None else noise
    return mean + noise * (0.5 * logvar).exp()


class VariationalGON(GradientOriginNetwork):
    """The variational GON on the convolutional decoder.

    Training vs scoring: the inner step takes the gradient at z0 = 0 of the inner loss
    ||F(mu(z0)) - x||^2 + KL(mu(z0), s(z0)) with the posterior mean (no noise) in both, so an
    image's latent is the same in training and scoring, and, with J = dF(mu(.))/dz0 at the common
    origin, the closed form z = 2 J^T (x - F(mu(0))) - dKL/dz0 is exact. (The original samples in
    the inner step too.) Training then decodes a reparameterised sample mu(z) + eps exp(s(z) / 2)
    and adds the KL term; scoring decodes the posterior mean mu(z), so scores are deterministic.
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 100, width: int = 64):
        super().__init__(latent_dim)
        self.decoder = ConvGONDecoder(image_shape, latent_dim, width)
        self.mean_head = nn.Linear(latent_dim, latent_dim)
        self.logvar_head = nn.Linear(latent_dim, latent_dim)

    has_penalty = True

    def inner_decoder(self, z0: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.mean_head(z0))

    def inner_penalty(self, z0: torch.Tensor) -> torch.Tensor:
        return gaussian_kl(self.mean_head(z0), self.logvar_head(z0))

    def latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.mean_head(z)

    def _loss(self, z: torch.Tensor, x: torch.Tensor, noise) -> torch.Tensor:
        mean, logvar = self.mean_head(z), self.logvar_head(z)
        return _elbo_loss(self.decode(_reparameterise(mean, logvar, noise)), x, mean, logvar)

    # The KL term needs the model's own training_loss: no SSIM-augmented loss for it.
    training_reconstruction = None

    def training_loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample negative ELBO (squared error + KL), through the closed-form step."""
        return self._loss(self.closed_form_latent(x), x, noise)

    def autograd_training_loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The definition: the inner gradient by autograd with create_graph=True."""
        return self._loss(self.gradient_latent(x, create_graph=True), x, noise)


class ConvEncoder(nn.Module):
    """The mirror of a ``ConvGONDecoder``: each transposed convolution becomes a convolution
    with the same kernel, stride and padding (which inverts its shape), ELU between them."""

    def __init__(self, decoder: ConvGONDecoder):
        super().__init__()
        deconvs = [m for m in decoder.net if isinstance(m, nn.ConvTranspose2d)]
        layers = []
        for deconv in reversed(deconvs):
            layers += [nn.Conv2d(deconv.out_channels, deconv.in_channels, deconv.kernel_size,
                                 deconv.stride, deconv.padding), nn.ELU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class VAE(nn.Module):
    """A conventional VAE: a convolutional encoder (the decoder's mirror) with mean and
    log-variance heads, and the GON's decoder. Width 40 makes its parameter count that of the
    variational GON at width 64 (866k against 857k at 28x28, latent 100). Scoring decodes the
    posterior mean, like the variational GON."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 100, width: int = 40):
        super().__init__()
        self.latent_dim = latent_dim
        self.decoder = ConvGONDecoder(image_shape, latent_dim, width)
        self.encoder = ConvEncoder(self.decoder)
        self.mean_head = nn.Linear(latent_dim, latent_dim)
        self.logvar_head = nn.Linear(latent_dim, latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean_head(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def training_loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        features = self.encoder(x)
        mean, logvar = self.mean_head(features), self.logvar_head(features)
        return _elbo_loss(self.decode(_reparameterise(mean, logvar, noise)), x, mean, logvar)
