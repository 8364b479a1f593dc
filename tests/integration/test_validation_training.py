"""Training with a held-out validation split: calibration on it alone, early stopping with the
best weights, resume after an interruption, and the wiring of ``score="auto"``."""

import json

import numpy as np
import pytest
import torch

from gonomaly import GONDetector, GonomalyError, ReconstructionDetector
from gonomaly.trainer import per_sample_loss, validation_loss
from gonomaly.validation import ValidationSplit


@pytest.fixture(scope="module")
def digits(mnist_small):
    return mnist_small[0][:400]


@pytest.fixture(scope="module")
def fitted(digits):
    return GONDetector(epochs=1, batch_size=64, seed=0, score="fused").fit(digits)


def test_fit_holds_out_the_recorded_split(fitted, digits):
    split = ValidationSplit.draw(len(digits), 0.15, 0)
    assert fitted.validation_["validation_indices"] == split.validation.tolist()
    assert fitted.validation_["n_train"] + fitted.validation_["n_validation"] == len(digits)
    assert fitted.training_stats_["n_train"] == len(split.train) == 340
    np.testing.assert_array_equal(fitted.calibration_images_, digits[split.validation])
    # one calibration score per validation image (fused: cross-fitted, see test_detector.py)
    assert fitted.train_errors_.shape == (len(split.validation),)


def test_threshold_and_mixture_move_with_a_validation_image_only(fitted, digits):
    validation = fitted.calibration_images_.copy()
    base = _copy(fitted).fit_scoring(validation)
    # A training-only image changed after training changes nothing that is calibrated.
    train_changed = digits.copy()
    train_changed[ValidationSplit.draw(len(digits), 0.15, 0).train[0]] = 1.0
    again = _copy(fitted).fit_scoring(train_changed[ValidationSplit.draw(len(digits), 0.15, 0).validation])
    assert again.threshold_ == base.threshold_
    # Validation images made very anomalous move the threshold and the fused mixture: fpr:0.05
    # on 60 images is their 58th smallest score, one of the three noise images.
    odd = validation.copy()
    odd[:3] = np.random.default_rng(0).random(odd[:3].shape, dtype=np.float32)
    moved = _copy(fitted).fit_scoring(odd)
    assert moved.threshold_ != base.threshold_
    assert not torch.equal(moved.scorer_.density.means, base.scorer_.density.means)


def _copy(detector):
    import copy

    return copy.copy(detector)


def test_explicit_validation_images_are_the_calibration_set(digits):
    detector = GONDetector(epochs=1, batch_size=64, seed=0, threshold="fpr:0.1").fit(
        digits[:300], validation=digits[300:330])
    assert detector.validation_["source"] == "explicit" and detector.training_stats_["n_train"] == 300
    assert detector.calibration_.n == 30
    assert detector.threshold_ == np.sort(detector.score_samples(digits[300:330]))[27]  # ceil(31 x 0.9)
    with pytest.raises(GonomalyError, match="validation images"):
        GONDetector(epochs=1).fit(digits[:50], validation=digits[:5, :, :14])


def test_val_fraction_zero_keeps_in_sample_calibration(digits):
    detector = GONDetector(epochs=1, batch_size=64, seed=0, val_fraction=0, threshold="mean-std:2").fit(digits)
    assert detector.training_stats_["n_train"] == len(digits) and detector.validation_["n_validation"] == 0
    errors = detector.score_samples(digits)
    assert detector.threshold_ == pytest.approx(errors.mean() + 2 * errors.std())
    assert "best_step" not in detector.training_stats_


def test_early_stopping_restores_the_best_validation_weights(digits):
    # A learning rate far too high makes the validation loss worsen after a few steps.
    detector = GONDetector(steps=40, batch_size=32, lr=0.05, eval_every=2, patience=3, seed=0).fit(digits)
    history = detector.validation_history_
    best_step, best = min(history, key=lambda e: e[1])
    stats = detector.training_stats_
    assert stats["best_step"] == best_step and stats["best_validation_loss"] == best
    assert stats["stopped_early"] and stats["steps"] == history[-1][0] < 40
    assert [s for s, _ in history[-3:]] == [best_step + 2, best_step + 4, best_step + 6]
    model = detector.model_
    measured = validation_loss(model, per_sample_loss(model, "l2", "gon"), torch.from_numpy(
        detector.calibration_images_), 32, 0, torch.device("cpu"))
    assert measured == best


def test_resume_after_interruption_is_bit_identical(digits, tmp_path):
    settings = dict(steps=24, batch_size=32, eval_every=3, patience=50, seed=2)
    reference = GONDetector(**settings).fit(digits)
    with pytest.raises(Exception, match="interrupted"):
        GONDetector(**settings).fit(digits, checkpoint_dir=tmp_path, on_step=lambda info: info.global_step == 13)
    progress = json.loads((tmp_path / "resume" / "progress.json").read_text())
    assert progress["global_step"] == 13 and len(progress["validation"]["history"]) == 4
    resumed = ReconstructionDetector.resume(tmp_path, digits)
    for (name, a), b in zip(reference.model_.state_dict().items(), resumed.model_.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.validation_history_ == reference.validation_history_
    assert resumed.loss_history_ == reference.loss_history_
    np.testing.assert_array_equal(resumed.train_errors_, reference.train_errors_)


def test_steps_decide_the_length_over_epochs(digits):
    detector = GONDetector(epochs=5, steps=7, batch_size=64, seed=0, val_fraction=0).fit(digits)
    assert detector.training_stats_["steps"] == len(detector.loss_history_) == 7


class StubChoice:
    params = {"error_map": "ssim", "sigma": 1.0, "score": "topk", "top_k": 10}

    def to_json(self):
        return {"candidates": [{"params": self.params, "auroc": 0.9}], "chosen": self.params}


def test_score_auto_fits_and_saves_the_choice(digits, tmp_path, monkeypatch):
    seen = {}

    def choose(detector, data):
        seen.update(calibration=data.calibration, train=data.train)
        return StubChoice()

    monkeypatch.setattr("gonomaly.detector.choose_scoring", choose)
    detector = GONDetector(epochs=1, batch_size=64, seed=0, score="auto").fit(digits)
    split = ValidationSplit.draw(len(digits), 0.15, 0)
    np.testing.assert_array_equal(seen["calibration"], digits[split.validation])
    np.testing.assert_array_equal(seen["train"], digits[split.train])
    assert detector.score == "auto" and detector.effective("score") == "topk"
    assert detector.effective("error_map") == "ssim" and detector.scorer_.top_k == 10
    detector.save(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["hyperparameters"]["score"] == "auto"
    assert config["scoring"]["chosen"] == StubChoice.params
    assert config["scoring"]["auto"]["candidates"][0]["auroc"] == 0.9
    loaded = ReconstructionDetector.load(tmp_path / "run")
    assert loaded.effective("top_k") == 10
    np.testing.assert_array_equal(loaded.score_samples(digits[:20]), detector.score_samples(digits[:20]))
