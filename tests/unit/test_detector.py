import json

import numpy as np
import pytest
import torch

from gonomaly import CAEDetector, GONDetector, GonomalyError, ReconstructionDetector
from gonomaly.data.corruptions import corrupt
from gonomaly.metrics import image_metrics


def test_fit_sets_threshold_from_validation_errors(trained_gon):
    errors = trained_gon.train_errors_
    assert errors.shape == (300,)  # 15% of the 2,000 digits held out
    # fpr:0.05 by default: the ceil(301 x 0.95) = 286th smallest validation score.
    assert trained_gon.threshold_ == np.sort(errors)[285]
    assert trained_gon.calibration_.expected_false_alarm_rate == pytest.approx(15 / 301)
    # Training errors are measured on the same scale as test scores.
    np.testing.assert_allclose(trained_gon.score_samples(np.zeros((1, 28, 28), np.float32)),
                               trained_gon.score_samples(np.zeros((1, 1, 28, 28), np.uint8)))


def test_scores_are_batch_invariant(trained_gon, mnist_small):
    x = mnist_small[1][:256]
    batched = trained_gon.score_samples(x)
    alone = np.array([trained_gon.score_samples(x[i:i + 1])[0] for i in range(0, 256, 17)])
    np.testing.assert_allclose(batched[::17], alone, rtol=1e-5)
    assert np.max(np.abs(batched[::17] - alone) / alone) < 1e-5


def test_detects_impulse_noise(trained_gon, mnist_small):
    clean = (mnist_small[1] * 255).round().astype(np.uint8)[:, 0]
    noisy = corrupt(clean, "impulse_noise", seed=0)
    scores = trained_gon.score_samples(np.concatenate([clean, noisy]))
    labels = np.r_[np.zeros(len(clean)), np.ones(len(noisy))]
    metrics = image_metrics(labels, scores, trained_gon.threshold_)
    assert metrics["image_auroc"] > 0.9
    assert metrics["confusion"]["fp"] < 0.1 * len(clean)


def test_predict_and_decision_function(trained_gon, mnist_small):
    x = mnist_small[1][:50]
    scores = trained_gon.score_samples(x)
    np.testing.assert_allclose(trained_gon.decision_function(x), scores - trained_gon.threshold_)
    np.testing.assert_array_equal(trained_gon.predict(x), (scores > trained_gon.threshold_).astype(int))
    maps = trained_gon.anomaly_map(x)
    assert maps.shape == (50, 28, 28)
    np.testing.assert_allclose(maps.reshape(50, -1).mean(1), scores, rtol=1e-5)
    assert trained_gon.reconstruct(x).shape == x.shape
    assert trained_gon.encode(x).shape == (50, 100)


@pytest.mark.parametrize("rule, expected", [
    ("quantile:0.9", lambda e: np.quantile(e, 0.9)),
    ("value:0.05", lambda e: 0.05),
    ("mean-std:3", lambda e: e.mean() + 3 * e.std()),
])
def test_threshold_rules(mnist_small, rule, expected):
    detector = CAEDetector(epochs=1, threshold=rule).fit(mnist_small[0][:300])
    assert detector.threshold_ == pytest.approx(expected(detector.train_errors_))


def test_same_seed_same_weights_different_seed_differs(mnist_small):
    x = mnist_small[0][:256]
    a = GONDetector(epochs=1, seed=3).fit(x)
    b = GONDetector(epochs=1, seed=3).fit(x)
    c = GONDetector(epochs=1, seed=4).fit(x)
    for (name, wa), wb in zip(a.model_.state_dict().items(), b.model_.state_dict().values()):
        assert torch.equal(wa, wb), name
    np.testing.assert_array_equal(a.train_errors_, b.train_errors_)
    assert not np.array_equal(a.train_errors_, c.train_errors_)


def test_save_load_round_trip(trained_gon, mnist_small, tmp_path):
    trained_gon.save(tmp_path / "run")
    loaded = ReconstructionDetector.load(tmp_path / "run")
    assert isinstance(loaded, GONDetector)
    x = mnist_small[1][:100]
    np.testing.assert_array_equal(loaded.score_samples(x), trained_gon.score_samples(x))
    assert loaded.threshold_ == trained_gon.threshold_
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["threshold"]["rule"] == "fpr:0.05"
    assert config["threshold"]["calibration"]["n"] == config["validation"]["n_validation"] == 300
    assert loaded.calibration_ == trained_gon.calibration_
    assert config["model"] == "gon" and config["hyperparameters"]["latent_dim"] == 100


def test_tampered_or_mismatched_checkpoint_is_refused(trained_gon, tmp_path):
    run = trained_gon.save(tmp_path / "run")
    weights = run / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-10] + bytes(10))
    with pytest.raises(GonomalyError, match="sha256"):
        ReconstructionDetector.load(run)
    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(GonomalyError, match="sha256"):
        ReconstructionDetector.load(run)
    weights.write_bytes(original)
    config = json.loads((run / "config.json").read_text())
    config["hyperparameters"]["latent_dim"] = 64
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(GonomalyError, match="do not match"):
        ReconstructionDetector.load(run)
    (run / "config.json").write_text("{not json")
    with pytest.raises(GonomalyError, match="not valid JSON"):
        ReconstructionDetector.load(run)
    with pytest.raises(GonomalyError, match="not found"):
        ReconstructionDetector.load(tmp_path / "nowhere")


def test_bad_arrays_are_refused(trained_gon):
    bad = np.zeros((2, 28, 28), np.float32)
    bad[1, 3, 3] = np.nan
    with pytest.raises(GonomalyError, match="image 1 contains NaN"):
        trained_gon.score_samples(bad)
    with pytest.raises(GonomalyError, match="expects"):
        trained_gon.score_samples(np.zeros((2, 32, 32), np.float32))
    with pytest.raises(GonomalyError, match=r"\[0, 1\]"):
        trained_gon.score_samples(np.full((2, 28, 28), 2.0, np.float32))
    with pytest.raises(GonomalyError, match="not fitted"):
        GONDetector().score_samples(np.zeros((1, 28, 28), np.float32))


def test_a_fused_threshold_is_calibrated_on_scores_from_fits_without_each_image(mnist_small):
    """The fused density is fitted on the validation images; scored by it, they look more normal
    than a new image would. Their calibration scores come from 5-fold cross-fitting instead."""
    import copy

    from gonomaly.detector import CALIBRATION_FOLDS

    train, test = mnist_small
    validation = test[:100]
    detector = GONDetector(epochs=1, batch_size=50, width=16, latent_dim=16, score="fused", seed=0)
    detector.fit(train[:400], validation=validation)
    in_sample = detector.score_samples(validation)
    assert detector.train_errors_.mean() > in_sample.mean() + 0.1  # in-sample scores are optimistic
    # by construction: the first fold's scores are those of a scoring fitted on the other folds
    held = np.array_split(np.random.default_rng(0).permutation(100), CALIBRATION_FOLDS)[0]
    refit = copy.deepcopy(detector)
    refit._fit_scorer(np.delete(validation, held, axis=0))
    np.testing.assert_allclose(detector.train_errors_[held], refit.score_samples(validation[held]), rtol=1e-6)
    assert detector.threshold_ == np.sort(detector.train_errors_)[int(np.ceil(101 * 0.95)) - 1]
    # the kept scoring is fitted on all of them (its in-sample scores are what score_samples gives)
    np.testing.assert_allclose(copy.deepcopy(detector).fit_scoring(validation).score_samples(validation),
                               in_sample, rtol=1e-6)


def test_an_mse_threshold_is_calibrated_on_the_validation_scores_themselves(trained_gon, mnist_small):
    # nothing of the mse score is fitted on normal images: no cross-fitting needed
    assert trained_gon.score == "mse"
    np.testing.assert_allclose(trained_gon.train_errors_,
                               trained_gon.score_samples(trained_gon.calibration_images_), rtol=1e-6)
