import copy

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from gonomaly import ReconstructionDetector
from gonomaly.data.corruptions import corrupt
from gonomaly.errors import GonomalyError
from gonomaly.metrics import image_metrics
from gonomaly.scores import SCORERS, ScoreInputs, scorer_class
from gonomaly.scores.features import LatentGaussian
from gonomaly.scores.fused import FusedScorer
from gonomaly.scores.maps import ssim_map
from gonomaly.thresholds import ThresholdRule


def fused(features: dict[str, np.ndarray]) -> FusedScorer:
    return FusedScorer().fit(lambda: features, seed=0)


def fused_score(scorer: FusedScorer, features: dict[str, np.ndarray]) -> np.ndarray:
    tensors = {k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in features.items()}
    return scorer(ScoreInputs(None, None, tensors)).numpy()


def test_ssim_matches_scikit_image(mnist_small):
    x = torch.from_numpy(mnist_small[1][:6])
    y = torch.flip(x, [0])
    ours = ssim_map(x, y).flatten(1).mean(1).numpy()
    reference = [structural_similarity(a[0], b[0], data_range=1.0) for a, b in zip(x.numpy(), y.numpy())]
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_latent_gaussian_mahalanobis_and_samples():
    rng = np.random.default_rng(0)
    cov = np.array([[4.0, 1.0], [1.0, 2.0]])
    data = rng.multivariate_normal([1.0, -2.0], cov, size=20000)
    gaussian = LatentGaussian.fit(data)
    np.testing.assert_allclose(gaussian.mean.numpy(), [1.0, -2.0], atol=0.05)
    point = np.array([[3.0, 0.0]])
    expected = np.sqrt((point - [1, -2]) @ np.linalg.inv(cov) @ (point - [1, -2]).T).item()
    assert gaussian(torch.from_numpy(point))[0].item() == pytest.approx(expected, rel=0.03)
    samples = gaussian.sample(20000, np.random.default_rng(1))
    np.testing.assert_allclose(np.cov(samples.T), cov, rtol=0.06, atol=0.06)


def test_fused_scorer_is_a_normalised_density():
    rng = np.random.default_rng(0)
    features = {"a": rng.lognormal(0, 0.5, 5000), "b": rng.lognormal(1, 0.2, 5000)}
    scorer = fused(features)
    inside = fused_score(scorer, {"a": np.array([1.0]), "b": np.array([np.e])})
    outside = fused_score(scorer, {"a": np.array([20.0]), "b": np.array([np.e])})
    assert outside[0] > inside[0] + 10
    # Density of log-features: integrate exp(-score) over a grid in log space, close to 1.
    grid = np.linspace(-4, 4, 241)
    la, lb = np.meshgrid(grid, grid + 1)
    density = np.exp(-fused_score(scorer, {"a": np.exp(la.ravel()) - 1e-6, "b": np.exp(lb.ravel()) - 1e-6}))
    assert density.sum() * (grid[1] - grid[0]) ** 2 == pytest.approx(1.0, abs=0.02)


@pytest.fixture(scope="module")
def fused_gon(trained_gon, mnist_small):
    detector = copy.copy(trained_gon)
    detector.score = "fused"
    return detector.fit_scoring(mnist_small[0])


def test_fused_score_uses_gon_features_and_detects_noise(fused_gon, mnist_small):
    assert {"latent_distance", "latent_norm", "origin_distance", "dissimilarity", "mse"} <= set(
        fused_gon.scorer_.names)
    clean = (mnist_small[1] * 255).round().astype(np.uint8)[:, 0]
    noisy = corrupt(clean, "impulse_noise", seed=0)
    scores = fused_gon.score_samples(np.concatenate([clean, noisy]))
    metrics = image_metrics(np.r_[np.zeros(500), np.ones(500)], scores, fused_gon.threshold_)
    assert metrics["image_auroc"] > 0.95
    errors = fused_gon.train_errors_
    assert fused_gon.threshold_ == ThresholdRule.parse(fused_gon.threshold).fit(errors)


def test_fused_scores_are_batch_invariant_and_survive_save_load(fused_gon, mnist_small, tmp_path):
    x = mnist_small[1][:128]
    batched = fused_gon.score_samples(x)
    alone = np.array([fused_gon.score_samples(x[i:i + 1])[0] for i in range(0, 128, 16)])
    np.testing.assert_allclose(batched[::16], alone, rtol=1e-5, atol=1e-6)
    fused_gon.save(tmp_path / "run")
    loaded = ReconstructionDetector.load(tmp_path / "run")
    assert loaded.score == "fused"
    np.testing.assert_allclose(loaded.score_samples(x), batched, rtol=1e-12)
    (tmp_path / "run" / "scoring.safetensors").write_bytes(b"tampered")
    with pytest.raises(Exception, match="sha256"):
        ReconstructionDetector.load(tmp_path / "run")


def test_sample_and_interpolate(trained_gon, mnist_small):
    samples = trained_gon.sample(16, seed=3)
    assert samples.shape == (16, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    np.testing.assert_array_equal(samples, trained_gon.sample(16, seed=3))
    assert not np.array_equal(samples, trained_gon.sample(16, seed=4))
    a, b = mnist_small[1][0], mnist_small[1][1]
    path = trained_gon.interpolate(a, b, steps=8)
    assert path.shape == (8, 1, 28, 28)
    ends = trained_gon.reconstruct(np.stack([a, b]))
    np.testing.assert_allclose(path[[0, -1]], ends, atol=1e-5)


def test_fused_scorer_on_few_normals():
    rng = np.random.default_rng(0)
    few = {"a": rng.lognormal(0, 0.5, 30), "b": rng.lognormal(1, 0.2, 30)}
    assert len(fused(few).density.weights) == 1
    with pytest.raises(Exception, match="at least 4 normal"):
        fused({"a": few["a"][:3], "b": few["b"][:3]})


def test_every_registered_score_is_found_and_an_unknown_one_is_refused():
    assert {"mse", "max", "topk", "fused"} <= set(SCORERS)
    for name, cls in SCORERS.items():
        assert scorer_class(name) is cls and cls.name == name
    with pytest.raises(GonomalyError, match="score 'nope': unknown"):
        scorer_class("nope")


def test_map_scores_read_the_maps():
    raw = torch.arange(8.0).reshape(2, 2, 2)
    smoothed = raw * 2
    inputs = ScoreInputs(raw, smoothed, None)
    np.testing.assert_allclose(SCORERS["mse"]()(inputs).numpy(), [1.5, 5.5])
    np.testing.assert_allclose(SCORERS["max"]()(inputs).numpy(), [6.0, 14.0])
    np.testing.assert_allclose(SCORERS["topk"](top_k=2)(inputs).numpy(), [5.0, 13.0])
