"""Detectors on industrial images: a short training on the real bottle category, map-based
scores through save/load, augmentation, the grown CAE and the CLI (train, evaluate, score)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import run_cli
from gonomaly import GONDetector
from gonomaly.augment import augment_batch
from gonomaly.data import load_data
from gonomaly.detector import CAEDetector, ReconstructionDetector
from gonomaly.errors import GonomalyError
from gonomaly.evaluation import evaluate
from gonomaly.models import CAE

BOTTLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mvtec_ad" / "bottle"
needs_bottle = pytest.mark.skipif(not BOTTLE.is_dir(), reason="../shared/data/mvtec_ad is absent")


@pytest.fixture(scope="module")
def bottle32():
    return load_data(f"mvtec:{BOTTLE}", image_size=32)


@pytest.fixture(scope="module")
def bottle_gon(bottle32):
    detector = GONDetector(latent_dim=32, width=16, epochs=6, batch_size=32, seed=0, score="topk",
                           top_k=20, sigma=1.0, error_map="ssim", loss="l2+ssim", augment="hflip,rot90")
    return detector.fit(bottle32.train)


@needs_bottle
def test_short_training_scores_every_bottle_test_image(bottle32, bottle_gon, tmp_path):
    result = evaluate(bottle_gon, bottle32)
    m = result.metrics
    assert len(result.scores) == 83 and np.isfinite(result.scores).all()
    assert m["n_normal"] + m["n_anomalous"] == 83 and sum(m["confusion"].values()) == 83
    assert m["image_auroc"] > 0.6 and m["pixel_auroc"] > 0.7 and 0 < m["aupro"] < 1
    maps = bottle_gon.anomaly_map(bottle32.test.images)
    assert maps.shape == (83, 32, 32)
    # The score is the mean of the 20 largest pixels of the smoothed map, per image alone.
    expected = np.sort(maps.reshape(83, -1), 1)[:, -20:].mean(1)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5)
    np.testing.assert_allclose(bottle_gon.score_samples(bottle32.test.images[5:6]), result.scores[5:6],
                               rtol=1e-5)
    bottle_gon.save(tmp_path / "run")
    loaded = ReconstructionDetector.load(tmp_path / "run")
    assert (loaded.score, loaded.sigma, loaded.top_k, loaded.error_map, loaded.augment) == \
        ("topk", 1.0, 20, "ssim", "hflip,rot90")
    np.testing.assert_allclose(loaded.score_samples(bottle32.test.images), result.scores, rtol=1e-5)


@pytest.fixture(scope="module")
def small_cae(mnist_small):
    return CAEDetector(epochs=1, batch_size=256, latent_dim=12, width=8).fit(mnist_small[0][:256])


@pytest.mark.parametrize("key, value", [("sigma", -1), ("error_map", "l3"), ("top_k", 0),
                                        ("augment", "spin"), ("loss", "l1")])
def test_saved_map_options_are_checked(small_cae, tmp_path, key, value):
    small_cae.save(tmp_path / "run")
    path = tmp_path / "run" / "config.json"
    config = json.loads(path.read_text())
    config["hyperparameters"][key] = value
    path.write_text(json.dumps(config))
    with pytest.raises(GonomalyError, match=f"hyperparameter {key}"):
        ReconstructionDetector.load(tmp_path / "run")


def test_augmentation_is_deterministic_and_only_flips_and_turns():
    x = torch.rand(16, 3, 8, 8)
    a = augment_batch(x, "hflip,vflip,rot90", seed=3, step=7)
    assert torch.equal(a, augment_batch(x, "hflip,vflip,rot90", seed=3, step=7))
    assert not torch.equal(a, augment_batch(x, "hflip,vflip,rot90", seed=3, step=8))
    assert augment_batch(x, "", 0, 0) is x
    for original, out in zip(x, a):  # each image is one of its 16 flips and turns
        options = [torch.rot90(original, k, (1, 2)).flip(d)
                                               for k in range(4) for d in ((), (1,), (2,), (1, 2))]
        assert any(torch.equal(out, o) for o in options)
    with pytest.raises(GonomalyError, match="unknown spin"):
        augment_batch(x, "spin", 0, 0)


def test_cae_keeps_the_seed_model_at_28_and_grows_for_larger_images():
    seed_shapes = {k: tuple(v.shape) for k, v in CAE((1, 28, 28)).state_dict().items()}
    assert seed_shapes == {"encoder.0.weight": (32, 1, 3, 3), "encoder.0.bias": (32,),
                           "encoder.3.weight": (64, 32, 3, 3), "encoder.3.bias": (64,),
                           "decoder.0.weight": (64, 32, 2, 2), "decoder.0.bias": (32,),
                           "decoder.2.weight": (32, 1, 2, 2), "decoder.2.bias": (1,)}
    for side, stages in ((32, 2), (64, 3), (256, 5)):
        model = CAE((3, side, side), latent_dim=20, width=8)
        x = torch.rand(2, 3, side, side)
        assert model.encode(x).shape == (2, 20, 1, 1)  # a real bottleneck
        assert model(x).shape == x.shape
        assert sum(isinstance(m, torch.nn.Conv2d) for m in model.encoder) == stages + 1
    gon = GONDetector(latent_dim=8, width=8).build_model((3, 128, 128))
    assert gon.decode(torch.zeros(1, 8)).shape == (1, 3, 128, 128)


@needs_bottle
def test_cli_train_evaluate_and_score_overlays(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "-q", "train", "--model", "cae", "--data", f"mvtec:{BOTTLE}",
                           "--image-size", "32", "--epochs", "1", "--batch-size", "64", "--width", "8",
                           "--latent-dim", "16", "--score", "max", "--sigma", "2", "--augment", "auto",
                           "--out", str(run))
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["image_shape"] == [3, 32, 32] and config["hyperparameters"]["augment"] == "hflip,vflip,rot90"
    code, out, err = run_cli(capsys, "-q", "evaluate", str(run), "--data", f"mvtec:{BOTTLE}",
                             "--json", str(tmp_path / "m.json"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_normal"] == 20 and metrics["n_anomalous"] == 63 and "pixel AUROC" in out
    assert 0 < metrics["pixel_auroc"] < 1 and 0 < metrics["aupro"] < 1
    files = [BOTTLE / "test/good/000.png", BOTTLE / "test/contamination/000.png"]
    code, out, err = run_cli(capsys, "-q", "score", str(run), *map(str, files), "--json",
                             "--overlays", str(tmp_path / "overlays"))
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["path"] for line in lines] == list(map(str, files))  # 900 px files, resized
    written = sorted((tmp_path / "overlays").iterdir())
    assert [p.name for p in written] == ["contamination_000_overlay.png", "good_000_overlay.png"]
    with Image.open(written[0]) as image:
        assert image.size == (32, 32) and image.mode == "RGB"


def test_cae_detector_round_trips_width(tmp_path, small_cae):
    small_cae.save(tmp_path / "cae")
    loaded = ReconstructionDetector.load(tmp_path / "cae")
    assert (loaded.latent_dim, loaded.width) == (12, 8)


def test_augmented_training_resumes_bit_identically(mnist_small, tmp_path):
    from gonomaly.errors import TrainingInterrupted

    x = mnist_small[0][:128]
    options = dict(latent_dim=16, width=16, epochs=2, batch_size=32, seed=3, augment="hflip,rot90")
    reference = GONDetector(**options).fit(x)
    plain = GONDetector(**{**options, "augment": ""}).fit(x)
    assert reference.loss_history_ != plain.loss_history_  # the augmentation is applied
    with pytest.raises(TrainingInterrupted):
        GONDetector(**options).fit(x, checkpoint_dir=tmp_path / "run",
                                   on_step=lambda info: info.global_step == 5)
    resumed = ReconstructionDetector.resume(tmp_path / "run", x)
    assert resumed.loss_history_ == reference.loss_history_
    for name, tensor in reference.model_.state_dict().items():
        assert torch.equal(tensor, resumed.model_.state_dict()[name]), name
