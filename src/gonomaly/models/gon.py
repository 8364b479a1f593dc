"""The convolutional Gradient Origin Network (Bond-Taylor & Willcocks, ICLR 2021).

One network F is both decoder and encoder: the latent of an image x is the negative gradient of
its reconstruction loss at the origin, z = -d/dz0 ||F(z0) - x||^2 at z0 = 0, and x_hat = F(z).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn


def gradient_origin_latent(decoder: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                           latent_dim: int, create_graph: bool,
                           penalty: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """z = -grad of the per-sample inner loss at z0 = 0, shared by every GON variant: the squared
    error of ``decoder(z0)``, plus ``penalty(z0)`` (per sample) when given.

    The inner loss is summed over pixels and over the batch. A sum keeps each sample's gradient
    independent of the batch (a batch mean would scale every latent by 1/batch size), and the
    decoder has no layer that mixes samples, so a latent depends on its own image alone.
    """
    # Scoring runs under no_grad, but the encoder is a gradient; under mixed precision the
    # gradient-origin step stays in float32 (it is a difference of nearly equal images).
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        z0 = torch.zeros(x.shape[0], latent_dim, dtype=x.dtype, device=x.device, requires_grad=True)
        inner_loss = (decoder(z0) - x).pow(2).sum()
        if penalty is not None:
            inner_loss = inner_loss + penalty(z0).sum()
        (grad,) = torch.autograd.grad(inner_loss, z0, create_graph=create_graph)
    return -grad


def closed_form_step(x: torch.Tensor, image: torch.Tensor, jacobian: torch.Tensor,
                     offset: torch.Tensor) -> torch.Tensor:
    """The gradient-origin latent in closed form, z = 2 J^T (x - F(0)) - dP/dz0 (see
    ``OriginLinearisation``)."""
    return 2 * (x.flatten(1) - image) @ jacobian - offset


def _deconv(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, padding)


class ConvGONDecoder(nn.Module):
    """F: latent (B, Z) -> image (B, C, H, W) in [0, 1].

    28x28 is the reference notebooks' network, Z -> 4w -> 2w -> w -> C with w = 64 (100 -> 256 -> 128 -> 64 -> 1)
    and ELU. Other square sizes (a power of two, 16 or more) start at 4x4 and double the
    resolution per stage, halving the width. No normalisation layer: BatchNorm couples the samples
    of a batch and its running statistics are polluted by the z0 pass, and per-sample norms divide
    by a zero variance at z0 = 0 (every position of the first feature map is equal there).
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 100, width: int = 64):
        super().__init__()
        channels, height, width_px = image_shape
        if height != width_px:
            raise ValueError(f"conv GON needs square images, got {height}x{width_px}")
        if height == 28:
            layers = [_deconv(latent_dim, 4 * width, 4, 1, 0), nn.ELU(),  # 4x4
                      _deconv(4 * width, 2 * width, 3, 2, 1), nn.ELU(),   # 7x7
                      _deconv(2 * width, width, 4, 2, 1), nn.ELU(),       # 14x14
                      _deconv(width, channels, 4, 2, 1)]                  # 28x28
        else:
            stages = height.bit_length() - 3  # 4 * 2**stages == height
            if height < 16 or 4 << stages != height:
                raise ValueError(f"conv GON supports 28x28 or a power of two >= 16, got {height}")
            widths = [width * 2 ** (stages - 1 - i) for i in range(stages)]
            layers = [_deconv(latent_dim, widths[0], 4, 1, 0), nn.ELU()]
            for in_ch, out_ch in zip(widths, widths[1:]):
                layers += [_deconv(in_ch, out_ch, 4, 2, 1), nn.ELU()]
            layers.append(_deconv(widths[-1], channels, 4, 2, 1))
        self.net = nn.Sequential(*layers, nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


def origin_linearisation(decoder: Callable[[torch.Tensor], torch.Tensor], latent_dim: int,
                         device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """F(0) flattened (P,) and J = dF/dz at 0 (P, Z), differentiable in the weights.

    Forward mode costs one pass per latent dimension, at batch size 1: far less than the
    backward pass per image that autograd's gradient step costs. (Its first use loads torch's
    own decompositions through the deprecated torch.jit.script.)
    """
    origin = torch.zeros(latent_dim, device=device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        jacobian = torch.func.jacfwd(lambda z: decoder(z[None])[0].flatten())(origin)
    return decoder(origin[None]).flatten(), jacobian


class OriginLinearisation(nn.Module):
    """F(0), J = dF/dz at 0 and the inner penalty's gradient at 0, for the closed-form encoder.

    With the per-sample squared error, the gradient at the origin is linear in x:
    z = -J^T dL/dx_hat (F(0), x) - dP/dz0 = 2 J^T (x - F(0)) - dP/dz0, where P is the part of the
    inner loss that does not see x (zero for the plain GONs, the variational GON's KL term). All
    three are fixed once the weights are, so inference encodes with one matrix product instead of
    a forward and a backward pass. The buffers are not persistent: they are recomputed from the
    weights, never loaded.
    """

    def __init__(self, model: "GradientOriginNetwork"):
        super().__init__()
        image, jacobian, offset = model.origin_terms()
        self.register_buffer("image", image.detach(), persistent=False)
        self.register_buffer("jacobian", jacobian.detach(), persistent=False)
        self.register_buffer("offset", offset.detach(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return closed_form_step(x, self.image, self.jacobian, self.offset)


class GradientOriginNetwork(nn.Module):
    """Encoder and decoder in one network, through the gradient-origin step.

    Shared by every GON: a subclass sets ``self.decoder`` (F: latent -> image on the training
    grid) and may override ``inner_decoder`` / ``inner_penalty`` (the inner loss is
    ||inner_decoder(z0) - x||^2 + inner_penalty(z0) per sample) and ``latent`` (what the decoder
    takes, from the gradient-origin latent: itself, or the variational GON's posterior mean).
    """

    latent_dim: int
    decoder: nn.Module
    has_penalty: bool = False  # whether ``inner_penalty`` adds a term (the variational GON's KL)

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.closed_form: OriginLinearisation | None = None

    # -- the inner loss ---------------------------------------------------------------------
    def inner_decoder(self, z0: torch.Tensor) -> torch.Tensor:
        return self.decoder(z0)

    def inner_penalty(self, z0: torch.Tensor) -> torch.Tensor:
        """Per-sample inner-loss term that does not depend on x (with ``has_penalty``)."""
        return torch.zeros(z0.shape[0], device=z0.device)

    def latent(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def origin_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """F(0) (P,), J (P, Z) and dP/dz0 at 0 (Z,), differentiable in the weights."""
        device = next(self.parameters()).device
        image, jacobian = origin_linearisation(self.inner_decoder, self.latent_dim, device)
        origin = torch.zeros(1, self.latent_dim, device=image.device, requires_grad=True)
        if not self.has_penalty:
            return image, jacobian, torch.zeros(self.latent_dim, device=image.device)
        (offset,) = torch.autograd.grad(self.inner_penalty(origin).sum(), origin, create_graph=True)
        return image, jacobian, offset[0]

    # -- encoding ------------------------------------------------------------------------------
    def prepare_closed_form(self) -> "GradientOriginNetwork":
        """Precompute the closed form for inference; training mode drops it (it goes stale)."""
        with torch.enable_grad():
            self.closed_form = OriginLinearisation(self)
        return self

    def train(self, mode: bool = True) -> "GradientOriginNetwork":
        if mode:
            self.closed_form = None
        return super().train(mode)

    def gradient_latent(self, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """z = -grad of the inner loss at z0 = 0: closed form when prepared and no graph is
        needed (it is exact there), else autograd, which the reference training step needs."""
        if self.closed_form is not None and not create_graph:
            return self.closed_form(x)
        return gradient_origin_latent(self.inner_decoder, x, self.latent_dim, create_graph,
                                      penalty=self.inner_penalty if self.has_penalty else None)

    def encode(self, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """The latent the decoder takes, deterministic (the posterior mean for the VGON)."""
        return self.latent(self.gradient_latent(x, create_graph))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction: always through the encoding, never F(0)."""
        return self.decode(self.encode(x, create_graph=self.training and torch.is_grad_enabled()))

    def closed_form_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The gradient-origin latent of a training batch, in closed form, z = 2 J^T (x - F(0))
        - dP/dz0, with F(0), J and dP/dz0 evaluated once per batch and differentiable in the
        weights: the same latent and the same weight gradients as autograd with
        create_graph=True (the definition, which the tests compare against), at a cost that
        does not grow with the batch size."""
        with torch.autocast(x.device.type, enabled=False):  # the step in float32, always
            return closed_form_step(x, *self.origin_terms())

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample squared error summed over pixels, back-propagating through the step."""
        return (self.training_reconstruction(x).float() - x).pow(2).flatten(1).sum(1)

    def training_reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat through the closed-form gradient step, differentiable in the weights (for
        ``training_loss`` and for training losses beyond the squared error)."""
        return self.decode(self.latent(self.closed_form_latent(x)))

    def autograd_training_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The training loss by definition: the inner gradient by autograd, create_graph=True."""
        x_hat = self.decode(self.encode(x, create_graph=True))
        return (x_hat.float() - x).pow(2).flatten(1).sum(1)


class ConvGON(GradientOriginNetwork):
    """The convolutional GON: F is ``ConvGONDecoder``."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 100, width: int = 64):
        super().__init__(latent_dim)
        self.decoder = ConvGONDecoder(image_shape, latent_dim, width)
