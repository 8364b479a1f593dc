"""The detector settings every workflow shares, and the one function that turns them into a detector."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from gonomaly.detector import DETECTORS
from gonomaly.errors import GonomalyError

# Where a workflow prints its results (tables, score lines): print, click.echo, a list's append.
Echo = Callable[[str], None]

# Hyper-parameters whose None means "the model's own default" (passed on only when set).
MODEL_DEFAULTED = ("latent_dim", "width")


@dataclass(frozen=True)
class DetectorConfig:
    """Which model to build and its hyper-parameters, with the detector's own defaults.

    ``lr``, ``latent_dim`` and ``width`` None take the model's defaults (the learning rate 1e-3,
    implicit-gon 1e-4; latent size 100, implicit-gon 32). ``augment="auto"`` takes what the
    training data's MVTec category allows (see ``resolve_augment``)."""

    model: str = "gon"
    epochs: int = 5
    batch_size: int = 128
    lr: float | None = None
    latent_dim: int | None = None
    width: int | None = None
    threshold: str = "mean-std:2"
    score: str = "mse"
    error_map: str = "l2"
    sigma: float = 0.0
    top_k: int = 100
    loss: str = "l2"
    augment: str = ""
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"


def make_detector(config: DetectorConfig, progress: bool = False):
    """A new, unfitted detector of ``config.model`` with the config's hyper-parameters."""
    if config.model not in DETECTORS:
        raise GonomalyError(f"model '{config.model}': unknown (known: {', '.join(DETECTORS)})")
    options = asdict(config)
    cls = DETECTORS[options.pop("model")]
    for name in MODEL_DEFAULTED:
        if options[name] is None:
            del options[name]
    return cls(progress=progress, **options)


def resolve_augment(augment: str, bundle) -> str:
    """``auto``: the category's table entry (``gonomaly.data.mvtec.AUGMENTATIONS``), else none."""
    if augment != "auto":
        return augment
    return bundle.description.get("augment") or ""
