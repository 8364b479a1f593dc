"""What only the implicit GON does: reconstructions and anomaly maps on any grid, in the report."""

import copy

import numpy as np
import pytest

from gonomaly import GonomalyError, ImplicitGONDetector
from gonomaly.data import NORMAL_GROUP, DataBundle
from gonomaly.data.synthetic import synthetic_image_set
from gonomaly.evaluation import evaluate
from gonomaly.report.examples import EXAMPLES_FILE, save_examples
from gonomaly.report.html import build_report


@pytest.fixture(scope="module")
def small_implicit(mnist_small):
    return ImplicitGONDetector(latent_dim=8, width=32, fourier_features=2, epochs=1, batch_size=64,
                               sigma=1.0, seed=0).fit(mnist_small[0][:256])


def test_four_times_the_resolution(small_implicit, mnist_small):
    x = mnist_small[1][:4]
    fine = small_implicit.reconstruct(x, size=112)
    assert fine.shape == (4, 1, 112, 112)
    # The same function sampled four times as densely: its 4x4 means stay close to the native
    # rendering (the grids differ by under half a coarse pixel).
    native = small_implicit.reconstruct(x)
    pooled = fine.reshape(4, 1, 28, 4, 28, 4).mean((3, 5))
    assert np.abs(pooled - native).mean() < 0.5 * np.abs(native - native.mean()).mean()


def test_anomaly_maps_at_any_resolution(small_implicit, mnist_small):
    x = mnist_small[1][:3]
    # At the training size, resampling is the identity: the map is the scoring map.
    np.testing.assert_allclose(small_implicit.anomaly_map(x, size=28), small_implicit.anomaly_map(x),
                               rtol=1e-5, atol=1e-7)
    for size, shape in ((112, (3, 112, 112)), ((40, 60), (3, 40, 60))):
        fine = small_implicit.anomaly_map(x, size=size)
        assert fine.shape == shape and np.isfinite(fine).all() and (fine >= 0).all()
    # On a 55-point grid every other point is a training-grid point (both span [-1, 1]): there,
    # unsmoothed, the finer map is the scoring map; between them it is new.
    unsmoothed = copy.copy(small_implicit)
    unsmoothed.sigma = 0.0
    fine = unsmoothed.anomaly_map(x, size=55)
    np.testing.assert_allclose(fine[:, ::2, ::2], unsmoothed.anomaly_map(x), rtol=1e-4, atol=1e-6)
    assert not np.allclose(fine[:, 1::2, 1::2], fine[:, :-1:2, :-1:2], atol=1e-4)
    with pytest.raises(GonomalyError, match="size 0"):
        small_implicit.anomaly_map(x, size=0)


def test_report_shows_the_rendering_for_the_implicit_gon(small_implicit, mnist_small, tmp_path):
    test = synthetic_image_set(mnist_small[1][:24], rng=0)
    bundle = DataBundle("mnist:synthetic", mnist_small[0][:24], test, "synthetic anomalies")
    result = evaluate(small_implicit, bundle)
    result.save(tmp_path / "eval")
    save_examples(small_implicit, test, result.scores, tmp_path / "eval", per_group=4, seed=0)
    with np.load(tmp_path / "eval" / EXAMPLES_FILE, allow_pickle=False) as f:
        assert f["rendered_reconstructions"].shape[1:] == (112, 112)
        assert f["rendered_maps"].shape[1:] == (112, 112)
        groups = set(f["rendered_groups"].tolist())
    assert NORMAL_GROUP in groups and len(groups) > 1  # normal and anomalous images
    page = build_report(tmp_path / "eval", tmp_path / "report").read_text()
    assert 'src="rendered.png"' in page and "rendered 4x" not in page  # labels live in the PNG
    assert (tmp_path / "report" / "rendered.png").stat().st_size > 1000
