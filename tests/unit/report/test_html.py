"""Tests for the HTML report (gonomaly.report.html) and the examples it reads (report.examples).

The main fixture, ``built_report`` (conftest.py), trains a real GON for one epoch on 300 MNIST
digits, evaluates it against impulse noise and stripes and builds the report once per session.
A numpy stand-in detector covers what the GON does not have yet: samples, interpolations and
ground-truth masks.
"""

from __future__ import annotations

import html
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

import gonomaly
from gonomaly import GonomalyError
from gonomaly.data.specs import NORMAL_GROUP, DataBundle, ImageSet
from gonomaly.evaluation import evaluate
from gonomaly.report.examples import EXAMPLES_FILE, save_examples
from gonomaly.report.html import REPORT_FILE, build_report, epoch_starts, find_eval_dir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Links(HTMLParser):
    """Every <img src> and every src/href attribute of a page (entities already decoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.links.append(value)
                if tag == "img" and name == "src":
                    self.images.append(value)


def page_links(index: Path) -> _Links:
    parser = _Links()
    parser.feed(index.read_text(encoding="utf-8"))
    parser.close()
    return parser


def check_images(index: Path) -> list[str]:
    """Every <img> of the page is a relative path to a readable, non-empty PNG beside it;
    returns the file names in page order."""
    names = []
    for src in page_links(index).images:
        parts = urlsplit(src)
        assert not parts.scheme and not parts.netloc, f"image {src!r} is not a relative path"
        name = unquote(parts.path)
        assert "/" not in name and "\\" not in name and name not in ("", ".", ".."), src
        path = index.parent / name
        assert path.is_file(), f"{src}: no such file in the report folder"
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC), f"{name}: not a PNG"
        with Image.open(path) as im:
            im.verify()
        names.append(name)
    return names


# --------------------------------------------------------------------------------------------
# The report of a real run
# --------------------------------------------------------------------------------------------


def test_report_images_all_exist(built_report):
    index = built_report.index
    assert index == built_report.report_dir / REPORT_FILE and index.is_file()
    names = check_images(index)
    # Every figure the page shows is there, and every PNG written is shown.
    assert len(names) == len(set(names))
    assert set(names) == {p.name for p in built_report.report_dir.glob("*.png")}
    expected = {"group_bars.png", "score_histograms.png", "roc_pr.png", "confusion_matrix.png",
                "loss.png", "misses.png"}
    assert expected <= set(names)
    recon = [n for n in names if n.startswith("reconstructions_")]
    assert len(recon) == len(built_report.group_names)  # normal and each anomaly group
    # Nothing else is left in the folder (no temporary files from the atomic writes).
    assert {p.name for p in built_report.report_dir.iterdir()} == {*names, REPORT_FILE}


def test_report_content(built_report):
    page = built_report.index.read_text(encoding="utf-8")
    metrics = built_report.metrics
    assert page.startswith("<!DOCTYPE html>")
    assert f"<title>gonomaly report: {built_report.model_name} on" in page
    assert html.escape(built_report.spec) in page
    assert f"{metrics['threshold']:.6g}" in page
    assert html.escape(metrics["threshold_rule"]) in page
    assert f"gonomaly {gonomaly.__version__}" in page
    assert f"{len(built_report.group_names) * 60:,} (60 normal, 120 anomalous)" in page
    for group in built_report.group_names:
        assert f"<td>{html.escape(group)}</td>" in page, f"group {group} missing from the table"
        assert f"<h3>{html.escape(group)}</h3>" in page, f"group {group} has no reconstructions"
    # The summary cards and the metric table carry the evaluation's figures.
    assert f"{metrics['image_auroc']:.3f}" in page and f"{metrics['image_aupr']:.3f}" in page
    for name, entry in metrics["groups"].items():
        assert f"<td>{entry['n']:,}</td><td>{entry['flagged']:,}</td>" in page, name
    for section in ("groups", "scores", "training", "reconstructions", "maps", "mistakes",
                    "generative"):
        assert f'<section id="{section}">' in page
    # MNIST-C has no masks: that section says so. The GON samples and interpolates.
    assert "no ground-truth masks" in page and "no sample() or interpolate()" not in page
    assert 'src="samples.png"' in page and 'src="interpolations.png"' in page


def test_report_is_self_contained(built_report):
    page = built_report.index.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    for link in page_links(built_report.index).links:
        scheme = urlsplit(link).scheme
        assert scheme in ("", "data"), f"external reference {link!r}"
        assert not link.startswith("/") and ".." not in link, link


def test_rebuild_from_saved_files_is_identical(built_report, tmp_path):
    """Only the saved files are read: copies of them, without the weights, give the same page
    and the same figures."""
    eval_copy, run_copy = tmp_path / "eval", tmp_path / "run"
    shutil.copytree(built_report.eval_dir, eval_copy)
    run_copy.mkdir()
    for name in ("config.json", "history.json"):
        shutil.copy(built_report.run_dir / name, run_copy / name)
    index = build_report(eval_copy, tmp_path / "report", run_copy)
    assert index.read_bytes() == built_report.index.read_bytes()
    for png in built_report.report_dir.glob("*.png"):
        assert (tmp_path / "report" / png.name).read_bytes() == png.read_bytes(), png.name


def test_examples_file_matches_the_scores(built_report):
    with np.load(built_report.eval_dir / EXAMPLES_FILE, allow_pickle=False) as f:
        ex = dict(f)
    with np.load(built_report.eval_dir / "scores.npz", allow_pickle=False) as f:
        saved = dict(f)
    threshold = built_report.metrics["threshold"]
    assert str(ex["format"]) == "gonomaly-examples/1" and str(ex["model"]) == "gon"
    assert float(ex["threshold"]) == pytest.approx(threshold)
    assert ex["grid_groups"].dtype.kind == "U" and ex["misses_ids"].dtype.kind == "U"
    # Eight images of each group, normal first; images, reconstructions and maps line up.
    groups = list(ex["grid_groups"])
    assert [g for i, g in enumerate(groups) if groups.index(g) == i] == list(built_report.group_names)
    assert all(groups.count(g) == 8 for g in built_report.group_names)
    assert ex["grid_images"].shape == ex["grid_reconstructions"].shape == (24, 28, 28)
    assert ex["grid_maps"].shape == (24, 28, 28)
    np.testing.assert_allclose(ex["grid_scores"], saved["scores"][ex["grid_idx"]])
    np.testing.assert_array_equal(ex["grid_ids"], saved["ids"][ex["grid_idx"]])
    np.testing.assert_allclose(ex["grid_maps"].mean(axis=(1, 2)), ex["grid_scores"], rtol=1e-4)
    # Misses: anomalous, at or below the threshold, lowest first; false alarms the reverse.
    n_missed = built_report.metrics["confusion"]["fn"]
    assert len(ex["misses_idx"]) == min(8, n_missed)
    assert (saved["labels"][ex["misses_idx"]] == 1).all()
    assert (ex["misses_scores"] <= threshold).all()
    assert (np.diff(ex["misses_scores"]) >= 0).all()
    anomalous_scores = saved["scores"][saved["labels"] == 1]
    assert ex["misses_scores"][0] == anomalous_scores.min()
    n_false = built_report.metrics["confusion"]["fp"]
    assert len(ex["false_alarms_idx"]) == min(8, n_false)
    assert (saved["labels"][ex["false_alarms_idx"]] == 0).all()
    assert (ex["false_alarms_scores"] > threshold).all()
    assert (np.diff(ex["false_alarms_scores"]) <= 0).all()
    # The GON samples and interpolates; MNIST-C has no masks, so no overlays.
    assert ex["samples"].shape == (16, 28, 28) and ex["interpolations"].shape[1:] == (8, 28, 28)
    assert "overlay_images" not in ex


def test_missing_optional_inputs_leave_sections_out(built_report, tmp_path):
    only_metrics = tmp_path / "eval"
    only_metrics.mkdir()
    shutil.copy(built_report.eval_dir / "metrics.json", only_metrics)
    index = build_report(only_metrics, tmp_path / "report")
    page = index.read_text(encoding="utf-8")
    assert set(check_images(index)) == {"group_bars.png", "confusion_matrix.png"}
    assert "scores.npz not found" in page and "examples.npz not found" in page
    assert "No run folder given" in page
    # A run folder without its history: the loss curve is left out, the configuration stays.
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(built_report.run_dir / "config.json", run)
    shutil.copy(built_report.eval_dir / "scores.npz", only_metrics)
    page = build_report(only_metrics, tmp_path / "report2", run).read_text(encoding="utf-8")
    assert "history.json not found" in page and "latent_dim" in page
    assert "roc_pr.png" in page and "loss.png" not in page


def test_missing_or_broken_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(GonomalyError, match="metrics.json: not found"):
        build_report(tmp_path, tmp_path / "report")
    (tmp_path / "metrics.json").write_text("{broken")
    with pytest.raises(GonomalyError, match="metrics.json: not valid JSON"):
        build_report(tmp_path, tmp_path / "report")
    assert not (tmp_path / "report" / REPORT_FILE).exists()


def test_find_eval_dir(tmp_path):
    with pytest.raises(GonomalyError, match="no evaluation found"):
        find_eval_dir(tmp_path)
    for name in ("eval-a", "eval-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text("{}")
    with pytest.raises(GonomalyError, match="several evaluations"):
        find_eval_dir(tmp_path)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text("{}")
    assert find_eval_dir(tmp_path) == tmp_path / "eval"


def test_epoch_starts():
    config = {"training": {"steps": 30}, "hyperparameters": {"epochs": 3}}
    assert epoch_starts(30, config) == [10, 20]
    assert epoch_starts(30, {"training": {"steps": 30}, "hyperparameters": {"epochs": 1}}) == []
    assert epoch_starts(29, config) is None  # the history does not match the configuration
    assert epoch_starts(30, {"training": {}}) is None
    assert epoch_starts(30, None) is None


# --------------------------------------------------------------------------------------------
# A stand-in detector with samples, interpolations and ground-truth masks
# --------------------------------------------------------------------------------------------


class StubDetector:
    """Blurs images as its 'reconstruction'; samples noise; interpolates in pixel space."""

    model_name = "stub <model> & co"
    threshold_rule_ = "value:0"

    def __init__(self) -> None:
        self.threshold_ = 0.0
        self.sample_calls = 0

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        return np.stack([gaussian_filter(image, (0, 1.2, 1.2)) for image in x]).astype(np.float32)

    def anomaly_map(self, x: np.ndarray) -> np.ndarray:
        return ((self.reconstruct(x) - x) ** 2).mean(axis=1)

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        return self.anomaly_map(x).reshape(len(x), -1).mean(axis=1).astype(np.float64)

    def sample(self, n: int) -> np.ndarray:
        import torch

        self.sample_calls += 1
        return torch.rand(n, 1, 28, 28).numpy()

    def interpolate(self, a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
        assert a.shape == b.shape == (1, 28, 28)
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None, None, None]
        return (1 - t) * a[None] + t * b[None]


@pytest.fixture()
def stub_run(digits, tmp_path):
    """10 normal digits and 10 digits with a bright square (masked), scored by the stub."""
    rng = np.random.default_rng(0)
    normal, blobbed = digits[:10].copy(), digits[10:].copy()
    masks = np.zeros((20, 28, 28), np.uint8)
    for i in range(10):
        r, c = rng.integers(2, 20, size=2)
        blobbed[i, r:r + 6, c:c + 6] = 1.0
        masks[10 + i, r:r + 6, c:c + 6] = 1
    images = np.concatenate([normal, blobbed])[:, None].astype(np.float32)
    groups = np.array([NORMAL_GROUP] * 10 + ["blob <&>"] * 10, dtype=object)
    test = ImageSet(images, np.array([0] * 10 + [1] * 10), groups,
                    [f"digit[{i}]" for i in range(20)])
    test.masks = masks
    detector = StubDetector()
    scores = detector.score_samples(images)
    detector.threshold_ = float(np.median(scores))  # some misses and some false alarms
    bundle = DataBundle("stub:<spec>", images[:10], test, "synthetic & local")
    result = evaluate(detector, bundle)
    result.save(tmp_path / "eval")
    save_examples(detector, test, result.scores, tmp_path / "eval", per_group=4, seed=3)
    return detector, test, result, tmp_path


def test_examples_with_samples_interpolations_and_masks(stub_run):
    detector, test, result, root = stub_run
    with np.load(root / "eval" / EXAMPLES_FILE, allow_pickle=False) as f:
        first = dict(f)
    assert first["samples"].shape == (16, 28, 28)
    assert first["interpolations"].shape == (3, 8, 28, 28)
    assert first["interpolation_ids"].shape == (3, 2)
    for row, (a, b) in zip(first["interpolations"], first["interpolation_ids"]):
        ia, ib = test.ids.index(str(a)), test.ids.index(str(b))
        assert test.labels[ia] == test.labels[ib] == 0  # between normal images
        np.testing.assert_allclose(row[0], test.images[ia, 0], atol=1e-6)
        np.testing.assert_allclose(row[-1], test.images[ib, 0], atol=1e-6)
    assert 1 <= len(first["overlay_idx"]) <= 8
    assert (test.labels[first["overlay_idx"]] == 1).all()
    np.testing.assert_array_equal(first["overlay_masks"], test.masks[first["overlay_idx"]])
    assert first["grid_images"].shape == (8, 28, 28)  # per_group=4, two groups
    # The same call gives the same file, samples included (drawn under a fixed seed).
    save_examples(detector, test, result.scores, root / "again", per_group=4, seed=3)
    with np.load(root / "again" / EXAMPLES_FILE, allow_pickle=False) as f:
        second = dict(f)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert detector.sample_calls == 2


def test_report_with_samples_interpolations_and_overlays(stub_run):
    _, _, result, root = stub_run
    index = build_report(root / "eval", root / "report")
    names = check_images(index)
    assert {"samples.png", "interpolations.png", "anomaly_overlays.png", "misses.png",
            "false_alarms.png"} <= set(names)
    page = index.read_text(encoding="utf-8")
    # Strings from data are escaped everywhere: group, model, spec, source, ids.
    assert "blob &lt;&amp;&gt;" in page and "blob <&>" not in page
    assert "stub &lt;model&gt; &amp; co" in page and "<model>" not in page
    assert "stub:&lt;spec&gt;" in page and "synthetic &amp; local" in page
    assert re.search(r"<[^>]*&(?!amp;|lt;|gt;|quot;|#x27;)", page) is None
    assert "No run folder given" in page
    assert f"{result.metrics['threshold']:.6g}" in page


def test_save_examples_checks_its_input(stub_run):
    detector, test, result, root = stub_run
    with pytest.raises(ValueError, match="19 scores for 20 test images"):
        save_examples(detector, test, result.scores[:19], root)
    with pytest.raises(ValueError, match="per_group must be positive"):
        save_examples(detector, test, result.scores, root, per_group=0)
