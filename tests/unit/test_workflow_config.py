"""The workflow's detector config, the one place a config becomes a detector, and the slug."""

import subprocess
import sys
from dataclasses import fields

import pytest

from gonomaly.detector import DETECTORS
from gonomaly.errors import GonomalyError
from gonomaly.evaluation import slug
from gonomaly.workflow import DetectorConfig, make_detector
from gonomaly.workflow.config import DIGITS, IMAGES, IMPLICIT_DIGITS, data_defaults


@pytest.mark.parametrize("model", list(DETECTORS))
def test_make_detector_passes_every_setting(model):
    config = DetectorConfig(model=model, epochs=3, batch_size=16, lr=0.5, latent_dim=7, width=9, score="topk",
                            error_map="ssim", sigma=1.5, top_k=5, loss="l2+ssim", augment="hflip", seed=4,
                            threshold="quantile:0.9", steps=11, val_fraction=0.25, patience=3, eval_every=5)
    detector = make_detector(config, progress=True)
    assert isinstance(detector, DETECTORS[model]) and detector.progress is True
    for field in fields(DetectorConfig):
        if field.name != "model":
            assert getattr(detector, field.name) == getattr(config, field.name), field.name


def test_make_detector_leaves_model_defaults_and_refuses_unknown_models():
    detector = make_detector(DetectorConfig(model="implicit-gon"))
    assert (detector.latent_dim, detector.lr) == (None, None)  # stored as given
    assert (detector.effective("latent_dim"), detector.effective("lr")) == (32, 1e-4)
    assert detector.device == "cpu" and detector.progress is False
    with pytest.raises(GonomalyError, match="model 'vit': unknown"):
        make_detector(DetectorConfig(model="vit"))


@pytest.mark.parametrize("kind", ["mnist", "mnist-c", "fashion-mnist", "mvtec", "folder", "elpv"])
def test_unset_settings_come_from_the_data_kinds_table(kind):
    table = data_defaults(kind)
    detector = make_detector(DetectorConfig(), kind=kind)
    for name, value in table.items():
        assert getattr(detector, name) == value, name
    assert table is (DIGITS if kind in ("mnist", "mnist-c", "fashion-mnist") else IMAGES)
    assert make_detector(DetectorConfig(batch_size=7), kind=kind).batch_size == 7


def test_the_implicit_gon_has_its_own_row_on_digits_only():
    # Its recipe is a step budget at batch 32; --epochs given replaces the budget, as for images.
    for kind in ("mnist", "mnist-c", "fashion-mnist"):
        assert data_defaults(kind, "implicit-gon") is IMPLICIT_DIGITS and data_defaults(kind, "gon") is DIGITS
        detector = make_detector(DetectorConfig(model="implicit-gon"), kind=kind)
        assert (detector.steps, detector.batch_size) == (IMPLICIT_DIGITS["steps"], 32)
        assert (detector.score, detector.threshold) == (DIGITS["score"], DIGITS["threshold"])
    assert data_defaults("mvtec", "implicit-gon") is IMAGES
    by_epochs = make_detector(DetectorConfig(model="implicit-gon", epochs=3), kind="mnist")
    assert (by_epochs.steps, by_epochs.epochs, by_epochs.batch_size) == (None, 3, 32)


def test_benchmarks_give_each_model_its_own_defaults():
    from gonomaly.bench import ModelsBenchmarkConfig

    config = ModelsBenchmarkConfig()
    implicit, gon = config.detector_of("implicit-gon"), config.detector_of("gon", score="fused")
    assert (implicit.steps, implicit.batch_size, implicit.score) == (IMPLICIT_DIGITS["steps"], 32, "fused")
    assert (gon.steps, gon.epochs, gon.batch_size, gon.score) == (None, 2, 128, "fused")


def test_an_explicit_length_wins_over_the_tables():
    # Images default to a step budget: --epochs given replaces it, --steps given wins over both.
    assert (make_detector(DetectorConfig(epochs=3), kind="mvtec").steps, IMAGES["steps"] > 0) == (None, True)
    both = make_detector(DetectorConfig(epochs=3, steps=9), kind="mvtec")
    assert (both.epochs, both.steps) == (3, 9)
    assert make_detector(DetectorConfig(steps=9), kind="mnist").steps == 9


def test_slug_names_evaluation_folders():
    assert slug("mnist-c:corruptions=impulse_noise,stripe,n_test=100") == \
        "mnist-c_corruptions_impulse_noise_stripe_n_test_100"
    assert slug("folder:/data/a b.v2") == "folder__data_a_b.v2"
    assert slug("x" * 100) == "x" * 80 and slug("x" * 100, max_length=40) == "x" * 40


def test_workflow_and_benchmarks_need_no_click():
    code = "import sys, gonomaly.bench, gonomaly.workflow; print('click' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
