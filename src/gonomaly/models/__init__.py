"""Models: compact PyTorch modules with ``forward(x) -> x_hat`` and ``training_loss(x)``."""

from gonomaly.models.cae import CAE
from gonomaly.models.gon import ConvGON, ConvGONDecoder, GradientOriginNetwork, gradient_origin_latent
from gonomaly.models.implicit import ImplicitGON, SirenDecoder
from gonomaly.models.variational import VAE, VariationalGON

__all__ = ["CAE", "VAE", "ConvGON", "ConvGONDecoder", "GradientOriginNetwork", "ImplicitGON",
           "SirenDecoder", "VariationalGON", "gradient_origin_latent"]
