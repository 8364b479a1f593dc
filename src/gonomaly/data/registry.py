"""The ``{kind: loader}`` registry that ``specs`` dispatches through.

A dataset module registers its kinds when imported (``register(DatasetKind(...))``); ``specs``
imports every dataset module once, so the registry sits below both and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gonomaly.data.base import DataBundle, DataSpec

# (spec, data_dir, seed, image_size) -> one bundle per model
Loader = Callable[[DataSpec, "str | Path | None", int, "int | None"], list[DataBundle]]


@dataclass(frozen=True)
class DatasetKind:
    """How one SPEC kind is written and loaded.

    ``options``: the ``key=value`` options it takes. ``takes_root``: ``kind:ROOT`` names a folder
    (``options["root"]``) when the kind takes no ``key=value`` options or the SPEC holds no '=';
    ``flags``: trailing ``:flag`` words after the root (``mvtec:ROOT:pooled``), each set to "1".
    """

    name: str
    load: Loader
    options: frozenset[str] = frozenset()
    takes_root: bool = False
    flags: tuple[str, ...] = ()


KINDS: dict[str, DatasetKind] = {}


def register(kind: DatasetKind) -> DatasetKind:
    """Make ``kind.name`` a SPEC kind; registering a name twice is a programming error."""
    if kind.name in KINDS:
        raise ValueError(f"data kind '{kind.name}' is registered twice")
    KINDS[kind.name] = kind
    return kind
