import copy

import numpy as np
import pytest

from gonomaly import CAEDetector, ImplicitGONDetector
from gonomaly.cli import main

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


def _onnx_scores(path, images):
    session = ort.InferenceSession(str(path))
    return session.run(None, {"images": images})


@pytest.mark.parametrize("score", ["mse", "fused"])
def test_onnx_gon_scores_equal_gonomaly(trained_gon, mnist_small, tmp_path, score):
    from gonomaly.export import export_onnx

    detector = copy.copy(trained_gon)
    detector.score = score
    detector.fit_scoring(mnist_small[0][:1000])
    images = mnist_small[1][:64]
    scores, maps = _onnx_scores(export_onnx(detector, tmp_path / "m.onnx"), images)
    np.testing.assert_allclose(scores, detector.score_samples(images), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(maps, detector.anomaly_map(images), atol=1e-5)
    # The batch dimension is dynamic.
    one, _ = _onnx_scores(tmp_path / "m.onnx", images[:1])
    np.testing.assert_allclose(one, scores[:1], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def trained_implicit_gon(mnist_small):
    """An implicit GON briefly trained on real digits (small: the export traces every layer)."""
    return ImplicitGONDetector(latent_dim=8, width=32, fourier_features=2, epochs=1, batch_size=64,
                               seed=0).fit(mnist_small[0][:256])


@pytest.mark.parametrize("score", ["mse", "fused"])
def test_onnx_implicit_gon_scores_equal_gonomaly(trained_implicit_gon, mnist_small, tmp_path, score):
    """The closed-form encoder makes the SIREN's scorer feed-forward too: the graph renders the
    latent on the training grid in one piece (no coordinate chunks) for any batch."""
    from gonomaly.export import export_onnx

    detector = copy.copy(trained_implicit_gon)
    detector.score = score
    detector.fit_scoring(mnist_small[0][:256])
    images = mnist_small[1][:40]
    scores, maps = _onnx_scores(export_onnx(detector, tmp_path / "m.onnx"), images)
    np.testing.assert_allclose(scores, detector.score_samples(images), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(maps, detector.anomaly_map(images), atol=1e-5)
    one, _ = _onnx_scores(tmp_path / "m.onnx", images[:1])
    np.testing.assert_allclose(one, scores[:1], rtol=1e-4, atol=1e-4)


def test_export_command_for_cae(mnist_small, tmp_path):
    detector = CAEDetector(epochs=1).fit(mnist_small[0][:300])
    detector.save(tmp_path / "run")
    main(["-q", "export", str(tmp_path / "run")])
    images = mnist_small[1][:32]
    scores, _ = _onnx_scores(tmp_path / "run" / "model.onnx", images)
    np.testing.assert_allclose(scores, detector.score_samples(images), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("error_map, sigma, score", [("ssim", 1.5, "topk"), ("l2", 2.0, "max")])
def test_onnx_map_scores_equal_gonomaly(mnist_small, tmp_path, error_map, sigma, score):
    from gonomaly.export import export_onnx

    detector = CAEDetector(epochs=1, error_map=error_map, sigma=sigma, score=score, top_k=30)
    detector.fit(mnist_small[0][:300])
    images = mnist_small[1][:32]
    scores, maps = _onnx_scores(export_onnx(detector, tmp_path / "m.onnx"), images)
    np.testing.assert_allclose(maps, detector.anomaly_map(images), atol=1e-5)
    np.testing.assert_allclose(scores, detector.score_samples(images), rtol=1e-4, atol=1e-6)
