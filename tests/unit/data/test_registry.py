"""The {kind: loader} registry: a new dataset is one module that registers itself, and the data
package's modules import one another in layers (no cycle, no private name across modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from gonomaly.data import DataBundle, ImageSet, load_data, parse_spec
from gonomaly.data.registry import KINDS, DatasetKind, register
from gonomaly.errors import GonomalyError

DATA_PACKAGE = Path(__file__).resolve().parents[3] / "src" / "gonomaly" / "data"


@pytest.fixture
def toy_kind(monkeypatch):
    """A kind registered for one test: ``toy:size=N`` or ``toy:ROOT``."""
    monkeypatch.setattr("gonomaly.data.registry.KINDS", dict(KINDS))
    from gonomaly.data import registry

    def load(spec, data_dir, seed, image_size):
        n = spec.int_option("size", 3)
        images = np.zeros((n, 1, 4, 4), np.float32)
        test = ImageSet(images, np.zeros(n, np.int64), np.full(n, "normal", object), [str(i) for i in range(n)])
        return [DataBundle(spec.text, images, test, str(spec.options.get("root")), {"seed": seed})]

    kind = DatasetKind("toy", load, options=frozenset({"size"}), takes_root=True, flags=("fast",))
    registry.KINDS[kind.name] = kind
    monkeypatch.setattr("gonomaly.data.specs.KINDS", registry.KINDS)
    return kind


def test_a_registered_kind_is_parsed_and_loaded(toy_kind):
    bundle = load_data("toy:size=5", seed=7)
    assert bundle.train.shape == (5, 1, 4, 4) and bundle.description == {"seed": 7}
    assert parse_spec("toy:/a:b/c:fast").options == {"root": "/a:b/c", "fast": "1"}
    with pytest.raises(GonomalyError, match="unknown option 'colour' for toy"):
        parse_spec("toy:colour=1")
    with pytest.raises(GonomalyError, match="size must be positive"):
        load_data("toy:size=0")


def test_a_kind_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="'mnist' is registered twice"):
        register(DatasetKind("mnist", KINDS["mnist"].load))


def test_every_documented_kind_is_registered():
    assert set(KINDS) >= {"mnist", "fashion-mnist", "mnist-c", "mvtec", "folder"}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def test_data_modules_form_layers_without_private_imports():
    graph = {}
    for path in DATA_PACKAGE.glob("*.py"):
        if path.name == "__init__.py":
            continue
        edges = set()
        for module, names in _imports(path):
            assert not [n for n in names if n.startswith("_") and n != "__future__"], (path, module, names)
            if module.startswith("gonomaly.data."):
                edges.add(module.removeprefix("gonomaly.data."))
        graph[path.stem] = edges
    assert "mvtec" not in graph["folder"] and "folder" not in graph["mvtec"]  # siblings

    def reaches(start, target, seen=()):
        return any(n == target or (n not in seen and reaches(n, target, (*seen, n)))
                   for n in graph.get(start, ()))

    cycles = [m for m in graph if reaches(m, m)]
    assert not cycles, cycles
