"""The workflow's detector config, the one place a config becomes a detector, and the slug."""

import subprocess
import sys
from dataclasses import fields

import pytest

from gonomaly.detector import DETECTORS
from gonomaly.errors import GonomalyError
from gonomaly.evaluation import slug
from gonomaly.workflow import DetectorConfig, make_detector


@pytest.mark.parametrize("model", list(DETECTORS))
def test_make_detector_passes_every_setting(model):
    config = DetectorConfig(model=model, epochs=3, batch_size=16, lr=0.5, latent_dim=7, width=9, score="topk",
                            error_map="ssim", sigma=1.5, top_k=5, loss="l2+ssim", augment="hflip", seed=4)
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


def test_slug_names_evaluation_folders():
    assert slug("mnist-c:corruptions=impulse_noise,stripe,n_test=100") == \
        "mnist-c_corruptions_impulse_noise_stripe_n_test_100"
    assert slug("folder:/data/a b.v2") == "folder__data_a_b.v2"
    assert slug("x" * 100) == "x" * 80 and slug("x" * 100, max_length=40) == "x" * 40


def test_workflow_and_benchmarks_need_no_click():
    code = "import sys, gonomaly.bench, gonomaly.workflow; print('click' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
