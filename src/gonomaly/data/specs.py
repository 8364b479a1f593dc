"""Data SPEC strings, parsed in one place: ``kind[:option=value,...]``, and loaded through the
``{kind: loader}`` registry (``registry.KINDS``) that each dataset module fills.

``mnist``, ``mnist:classes=0,1``, ``fashion-mnist``, ``mnist-c``, ``mnist-c:corruptions=fog,stripe``.
``mvtec:ROOT/CATEGORY``, ``mvtec:ROOT`` (every category, one model each), ``mvtec:ROOT:pooled``;
``folder:ROOT`` (the MVTec layout) and ``folder:normal=DIR,abnormal=DIR[,mask=DIR][,test_normal=DIR]``.
``elpv``, ``elpv:type=mono`` or ``elpv:type=poly`` (solar cells; needs the elpv-dataset package).
A path may hold ':' and '/'; only a trailing ``:pooled`` is an option.
Options shared by the MNIST kinds: ``classes`` (the one-class protocol), ``n_train`` and ``n_test``
(the first N images of each split).
"""

from __future__ import annotations

from pathlib import Path

# Each dataset module registers its kinds when imported: one line here per dataset module.
import gonomaly.data.elpv  # noqa: F401
import gonomaly.data.folder  # noqa: F401
import gonomaly.data.mnist  # noqa: F401
import gonomaly.data.mnist_c  # noqa: F401
import gonomaly.data.mvtec  # noqa: F401
from gonomaly.data.base import NORMAL_GROUP, DataBundle, DataSpec, ImageSet
from gonomaly.data.registry import KINDS, DatasetKind
from gonomaly.errors import GonomalyError

# NORMAL_GROUP and ImageSet live in gonomaly.data.base (import them from gonomaly.data); they stay
# importable from here for the modules that imported them from specs before the package was layered.
__all__ = ["NORMAL_GROUP", "DataBundle", "DataSpec", "ImageSet", "load_bundles", "load_data", "parse_spec"]


def _parse_root(kind: DatasetKind, rest: str, text: str) -> DataSpec:
    """``kind:ROOT[:flag]``: a folder, then any of the kind's trailing flags."""
    options = {}
    for flag in kind.flags:
        if rest.endswith(":" + flag):
            rest, options[flag] = rest[:-len(flag) - 1], "1"
    if not rest:
        raise GonomalyError(f"data spec '{text}': {kind.name} needs a folder ({kind.name}:ROOT)")
    return DataSpec(kind.name, {"root": rest, **options}, text)


def _parse_options(kind: DatasetKind, rest: str, text: str) -> DataSpec:
    """``key=value,key=value``; a bare item continues the previous value (``classes=0,1``)."""
    options: dict[str, str] = {}
    last_key = None
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if eq:
            if key not in kind.options:
                raise GonomalyError(f"data spec '{text}': unknown option '{key}' for {kind.name} "
                                    f"(known: {', '.join(sorted(kind.options))})")
            options[key], last_key = value, key
        elif last_key is not None:
            options[last_key] += "," + item
        else:
            raise GonomalyError(f"data spec '{text}': '{item}' is not key=value")
    return DataSpec(kind.name, options, text)


def parse_spec(text: str) -> DataSpec:
    """A SPEC string as its kind and options; a kind that takes a folder reads ``kind:ROOT``
    unless it has options and the SPEC holds a ``key=value``."""
    name, _, rest = text.strip().partition(":")
    if name not in KINDS:
        raise GonomalyError(f"data spec '{text}': unknown kind '{name}' (known: {', '.join(sorted(KINDS))})")
    kind = KINDS[name]
    if kind.takes_root and (not kind.options or "=" not in rest):
        return _parse_root(kind, rest, text)
    return _parse_options(kind, rest, text)


def load_bundles(spec: str | DataSpec, data_dir: str | Path | None = None, seed: int = 0,
                 image_size: int | None = None) -> list[DataBundle]:
    """One bundle per model: per category for ``mvtec:ROOT``, else the one bundle
    (``image_size``: the side that MVTec and folder images are resized to, 64 by default)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    return KINDS[spec.kind].load(spec, data_dir, seed, image_size)


def load_data(spec: str | DataSpec, data_dir: str | Path | None = None, seed: int = 0,
              image_size: int | None = None) -> DataBundle:
    """Load the training images and labelled test set that a SPEC describes (``image_size``:
    the side that MVTec and folder images are resized to, 64 by default)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    bundles = load_bundles(spec, data_dir, seed, image_size)
    if len(bundles) > 1:
        names = ", ".join(b.description["category"] for b in bundles)
        raise GonomalyError(f"data spec '{spec.text}': {len(bundles)} categories ({names}), one "
                            f"model each: name one (ROOT/CATEGORY) or add :pooled")
    return bundles[0]
