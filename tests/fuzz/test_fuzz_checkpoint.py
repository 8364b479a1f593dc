"""Fuzzing ``ReconstructionDetector.load`` with hypothesis: mutated config.json values and
types, truncated or mutated safetensors (their header too), training errors, loss history and
scoring state, with and without a matching sha256 in config.json (so the parsers behind the
hash check are reached). Every damaged run folder must load correctly or give a GonomalyError;
a header must never make the loader allocate what the file does not hold."""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gonomaly import CAEDetector, GONDetector, GonomalyError, ReconstructionDetector

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HASHED = {"model.safetensors": ("weights_sha256",), "train_errors.npy": ("train_errors_sha256",),
          "history.json": ("history_sha256",), "scoring.safetensors": ("scoring", "sha256")}
WORK = Path(tempfile.mkdtemp(prefix="gonomaly-fuzz-ckpt-"))


@pytest.fixture(scope="module", autouse=True)
def _remove_scratch():
    yield
    shutil.rmtree(WORK, ignore_errors=True)


@pytest.fixture(scope="module")
def originals():
    """The files of two small saved runs: a GON with the fused score (every file kind) and a
    CAE with the plain MSE (no scoring file)."""
    from gonomaly.data import load_data

    train = load_data("mnist:n_train=256").train
    runs = {}
    # val_fraction=0: the tests below rewrite train_errors.npy's header, which names all 256.
    for name, detector in (("gon", GONDetector(latent_dim=8, width=8, epochs=1, batch_size=64,
                                               score="fused", val_fraction=0)),
                           ("cae", CAEDetector(epochs=1, batch_size=64, val_fraction=0))):
        folder = detector.fit(train).save(WORK / f"original-{name}")
        runs[name] = {p.name: p.read_bytes() for p in folder.iterdir()}
    return runs


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8)
    | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0, -1, 1, 2**31, "", "gon", "fused"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=4)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def _set(doc, path, value, delete=False):
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def _mutate_bytes(data: bytes, draw) -> bytes:
    buffer = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        if buffer:
            buffer[draw(st.integers(0, len(buffer) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        buffer = buffer[:draw(st.integers(0, len(buffer)))]
    return bytes(buffer) + draw(st.binary(max_size=8))


def _mutate_safetensors_header(data: bytes, draw) -> bytes:
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    field = draw(st.sampled_from(["shape", "dtype", "data_offsets", "length", "entry"]))
    if field == "shape":
        header[name]["shape"] = draw(st.lists(st.integers(0, 2**62), max_size=4))
    elif field == "dtype":
        header[name]["dtype"] = draw(st.sampled_from(["F64", "F16", "I64", "U8", "BOOL", "X", 3]))
    elif field == "data_offsets":
        header[name]["data_offsets"] = draw(st.lists(st.integers(-5, 2**63), max_size=3))
    elif field == "entry":
        header[name] = draw(json_values)
    text = json.dumps(header).encode()
    length = len(text) if field != "length" else draw(st.integers(0, 2**64 - 1))
    return struct.pack("<Q", length) + text + data[8 + size:]


@st.composite
def damaged_runs(draw, originals):
    files = dict(originals[draw(st.sampled_from(["gon", "cae"]))])
    kind = draw(st.sampled_from(["config"] * 4 + ["bytes"] * 3 + ["header"] * 2 + ["delete"]))
    if kind == "header":
        target = draw(st.sampled_from(sorted(f for f in files if f.endswith(".safetensors"))))
    else:
        target = "config.json" if kind == "config" else draw(st.sampled_from(sorted(files)))
    config = json.loads(files["config.json"])
    if kind == "delete":
        del files[target]
    elif kind == "config":  # a value of another type or range, or a key removed
        path = draw(st.sampled_from(list(_paths(config))))
        config = _set(config, path, draw(json_values), delete=draw(st.booleans()))
        files["config.json"] = json.dumps(config).encode()
    elif kind == "header":
        files[target] = _mutate_safetensors_header(files[target], draw)
    else:
        files[target] = _mutate_bytes(files[target], draw)
    if target in HASHED and target in files and draw(st.booleans()) and isinstance(config, dict):
        node = config  # record the damaged file's hash: the parser behind the check is reached
        for key in HASHED[target][:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[HASHED[target][-1]] = hashlib.sha256(files[target]).hexdigest()
            files["config.json"] = json.dumps(config).encode()
    return files


def _write(files: dict[str, bytes]) -> Path:
    folder = WORK / "case"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def load_or_refuse(folder: Path) -> None:
    """The property: a GonomalyError of one line, or a detector that scores."""
    try:
        detector = ReconstructionDetector.load(folder)
    except GonomalyError as exc:
        assert "\n" not in str(exc)
        event(f"refused: {str(exc).split(': ', 1)[-1].split(' (')[0][:40]}")
        return
    event("loaded")
    try:
        scores = detector.score_samples(np.zeros((2, *detector.image_shape_), np.float32))
    except GonomalyError:
        return
    assert scores.shape == (2,)


@FUZZ
@given(data=st.data())
def test_checkpoint_loader_fuzz(originals, data):
    load_or_refuse(_write(data.draw(damaged_runs(originals))))


def test_safetensors_header_claims_never_allocate(originals):
    """Headers claiming 2**64 bytes of header, or a tensor of 2**62 elements, with the hash
    updated so that the parser is reached: refused from the header, memory untouched."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    weights = originals["gon"]["model.safetensors"]
    size = int.from_bytes(weights[:8], "little")
    header = json.loads(weights[8:8 + size])
    name = sorted(k for k in header if k != "__metadata__")[0]
    cases = [struct.pack("<Q", 2**64 - 1) + weights[8:], struct.pack("<Q", len(weights)) + weights[8:]]
    for shape in ([2**62], [2**31, 2**31, 4], [0]):
        claimed = json.loads(json.dumps(header))
        claimed[name]["shape"] = shape
        text = json.dumps(claimed).encode()
        cases.append(struct.pack("<Q", len(text)) + text + weights[8 + size:])
    for damaged in cases:
        config = json.loads(originals["gon"]["config.json"])
        config["weights_sha256"] = hashlib.sha256(damaged).hexdigest()
        folder = _write({**originals["gon"], "model.safetensors": damaged,
                         "config.json": json.dumps(config).encode()})
        with pytest.raises(GonomalyError, match="model.safetensors"):
            ReconstructionDetector.load(folder)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_npy_header_claims_and_bad_history_are_refused(originals):
    """A .npy header claiming 10**12 values, an object array, a history that is not JSON:
    each a GonomalyError (the old loader allocated the first and crashed on the last)."""
    config = json.loads(originals["gon"]["config.json"])
    bad = {
        "train_errors.npy": [
            originals["gon"]["train_errors.npy"].replace(b"(256,)", b"(10**12,)".ljust(6)[:6])
            .replace(b"'descr': '<f8'", b"'descr': '<f8'"),
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (999999999999,), }"
            .ljust(128 + 10 - 1, b" ") + b"\n" + bytes(16),
            b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"
            .ljust(128 + 10 - 1, b" ") + b"\n" + bytes(16),
        ],
        "history.json": [b"{not json", b"[1, 2]", b'{"loss": "x"}', b"[" * 100_000],
    }
    for name, contents in bad.items():
        for content in contents:
            key = "train_errors_sha256" if name.endswith(".npy") else "history_sha256"
            for rehash in (False, True):
                damaged = dict(config)
                if rehash:
                    damaged[key] = hashlib.sha256(content).hexdigest()
                folder = _write({**originals["gon"], name: content,
                                 "config.json": json.dumps(damaged).encode()})
                with pytest.raises(GonomalyError, match=name.replace(".", r"\.")):
                    ReconstructionDetector.load(folder)


def test_config_value_types_are_checked(originals):
    config = json.loads(originals["gon"]["config.json"])
    for path, value, message in [
        (("hyperparameters", "latent_dim"), "8", "hyperparameter latent_dim"),
        (("hyperparameters", "latent_dim"), 10**9, "hyperparameter latent_dim"),
        (("hyperparameters", "width"), True, "hyperparameter width"),
        (("hyperparameters", "bogus"), 1, "hyperparameter bogus"),
        (("threshold", "value"), {"a": 1}, "threshold"),
        (("threshold", "rule"), 5, "threshold"),
        (("image_shape",), [1, 28], "image_shape"),
        (("image_shape",), [1, 10**9, 10**9], "image_shape"),
        (("scoring",), "x", "scoring"),
        (("scoring", "features"), ["mse", "l1", "max_error", "dissimilarity", "latent_norm",
                                   "latent_distance", "nope"], "unknown features"),
        (("model",), ["gon"], "unknown model"),
        (("weights_sha256",), 7, "sha256"),
    ]:
        damaged = json.loads(json.dumps(config))
        _set(damaged, path, value)
        folder = _write({**originals["gon"], "config.json": json.dumps(damaged).encode()})
        with pytest.raises(GonomalyError, match=message):
            ReconstructionDetector.load(folder)
    folder = _write({**originals["gon"], "config.json": b"[" * 100_000})
    with pytest.raises(GonomalyError, match="not valid JSON"):
        ReconstructionDetector.load(folder)
