"""The contract every registered detector keeps, on a few hundred real MNIST digits and a few
training steps: score shape, batch invariance, save/load round trip, predict and
decision_function consistent with threshold_, and its hyper-parameters round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from gonomaly.detector import DETECTORS, ReconstructionDetector
from gonomaly.thresholds import ThresholdRule
from gonomaly.validation import validation_size

SMALL = {"latent_dim": 8, "width": 8}


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def fitted(request, mnist_small):
    options = {} if request.param == "cae" else SMALL
    return DETECTORS[request.param](epochs=1, batch_size=128, seed=0, **options).fit(mnist_small[0][:384])


def test_scores_have_one_value_per_image(fitted, mnist_small):
    scores = fitted.score_samples(mnist_small[1][:40])
    assert scores.shape == (40,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    assert fitted.train_errors_.shape == (validation_size(384, fitted.val_fraction),)  # held out
    assert fitted.anomaly_map(mnist_small[1][:3]).shape == (3, 28, 28)


def test_scores_are_batch_invariant(fitted, mnist_small):
    x = mnist_small[1][:64]
    batched = fitted.score_samples(x)
    alone = np.array([fitted.score_samples(x[i:i + 1])[0] for i in range(0, 64, 9)])
    np.testing.assert_allclose(batched[::9], alone, rtol=1e-5)


def test_save_load_round_trip(fitted, mnist_small, tmp_path):
    loaded = ReconstructionDetector.load(fitted.save(tmp_path / "run"))
    assert type(loaded) is type(fitted)
    assert loaded.hyperparameters() == fitted.hyperparameters()
    assert loaded.threshold_ == fitted.threshold_
    x = mnist_small[1][:50]
    np.testing.assert_array_equal(loaded.score_samples(x), fitted.score_samples(x))


def test_predict_and_decision_function_follow_the_threshold(fitted, mnist_small):
    x = mnist_small[1][:50]
    scores = fitted.score_samples(x)
    np.testing.assert_allclose(fitted.decision_function(x), scores - fitted.threshold_)
    np.testing.assert_array_equal(fitted.predict(x), (scores > fitted.threshold_).astype(int))
    assert fitted.threshold_ == ThresholdRule.parse(fitted.threshold).fit(fitted.train_errors_)
