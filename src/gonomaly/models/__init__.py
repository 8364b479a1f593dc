"""Models: compact PyTorch modules with ``forward(x) -> x_hat`` and ``training_loss(x)``."""

from gonomaly.models.cae import CAE
from gonomaly.models.gon import ConvGON, ConvGONDecoder, gradient_origin_latent

__all__ = ["CAE", "ConvGON", "ConvGONDecoder", "gradient_origin_latent"]
