"""``score="auto"``: the label-free choice of error map, sigma, score and k on validation normals
against synthetic anomalies made from them (``gonomaly.scores.auto``), on real digits and bottles."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gonomaly import GONDetector
from gonomaly.data import load_data
from gonomaly.scores.auto import ScoringChoice, candidate_grid, choose_scoring, chosen_params, separation

BOTTLE = Path(os.environ.get("GONOMALY_DATA", "/nonexistent")) / "mvtec_ad" / "bottle"


@pytest.fixture(scope="module")
def digits_model(mnist_small):
    """A tiny GON trained for one epoch on 400 digits, and 120 other (validation) digits."""
    train, _ = mnist_small
    detector = GONDetector(epochs=1, batch_size=50, width=16, latent_dim=16, seed=0).fit(train[:400])
    return detector, train[400:520], train[:400]


@pytest.fixture(scope="module")
def digits_choice(digits_model):
    detector, validation, sources = digits_model
    return choose_scoring(detector, validation, sources, seed=0)


def test_the_grid_scales_sigma_and_k_with_the_image():
    def settings(grid, key):
        return sorted({c[key] for c in grid if c[key] is not None})

    at_64, at_28 = candidate_grid((3, 64, 64)), candidate_grid((1, 28, 28))
    assert settings(at_64, "sigma") == [0.0, 2.0, 4.0, 8.0]
    assert settings(at_28, "sigma") == [0.0, 0.875, 1.75, 3.5]
    assert settings(at_64, "top_k") == [10, 41, 164] and settings(at_28, "top_k") == [2, 8, 31]
    scores = [c["score"] for c in at_64]
    assert scores.count("mse") == 2 and scores.count("fused") == 1 and scores.count("max") == 8
    assert scores.count("topk") == 24


def test_separation_is_per_kind_and_oriented():
    normal = np.array([0.0, 1.0, 2.0, 3.0])
    synthetic = np.array([10.0, 11.0, -1.0, -2.0, 2.5, 0.5])  # a: above all, b: below all, c: half
    kinds = np.array(["a", "a", "b", "b", "c", "c"])
    result = separation(normal, synthetic, kinds)
    assert result["auroc_by_kind"] == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert result["auroc"] == 0.5
    assert result["auroc_pooled"] == pytest.approx(0.5)


def test_free_settings_come_from_the_best_candidate_that_reads_the_map():
    ranked = [{"error_map": None, "sigma": None, "score": "fused", "top_k": None, "auroc": 0.9},
              {"error_map": "l2", "sigma": None, "score": "mse", "top_k": None, "auroc": 0.8},
              {"error_map": "ssim", "sigma": 4.0, "score": "topk", "top_k": 41, "auroc": 0.7},
              {"error_map": "l2", "sigma": 2.0, "score": "max", "top_k": None, "auroc": 0.6}]
    assert chosen_params(ranked, 100) == {"error_map": "ssim", "sigma": 4.0, "score": "fused", "top_k": 100}
    assert chosen_params(ranked[1:], 100) == {"error_map": "l2", "sigma": 2.0, "score": "mse", "top_k": 100}
    assert chosen_params(ranked[2:], 100) == {"error_map": "ssim", "sigma": 4.0, "score": "topk", "top_k": 41}


def test_the_choice_is_the_best_candidate_and_recorded(digits_choice):
    choice = digits_choice
    assert isinstance(choice, ScoringChoice)
    assert choice.n_normals == choice.n_synthetic == 120
    assert choice.kinds == sorted(["cutpaste", "scar", "perlin", "blur", "intensity"])
    aurocs = [c["auroc"] for c in choice.candidates if c["auroc"] is not None]
    assert len(choice.candidates) == len(candidate_grid((1, 28, 28)))
    best = choice.candidates[0]
    assert best["auroc"] == max(aurocs) and aurocs == sorted(aurocs, reverse=True)
    assert choice.params["score"] == best["score"]
    for key in ("error_map", "sigma", "top_k"):
        if best[key] is not None:
            assert choice.params[key] == best[key]
    for candidate in choice.candidates:
        assert set(candidate["auroc_by_kind"]) == set(choice.kinds)
        assert candidate["auroc"] == pytest.approx(np.mean(list(candidate["auroc_by_kind"].values())), abs=1e-6)
    fused = next(c for c in choice.candidates if c["score"] == "fused")
    assert 0 <= fused["auroc"] <= 1  # 60 normals per half fit the density
    record = json.loads(json.dumps(choice.to_json()))
    assert record["params"] == choice.params and record["candidates"] == choice.candidates


def test_the_choice_is_deterministic_per_seed(digits_model, digits_choice):
    detector, validation, sources = digits_model
    again = choose_scoring(detector, validation, sources, seed=0)
    assert again.to_json() == digits_choice.to_json()
    other = choose_scoring(detector, validation, sources, seed=1)
    assert [c["auroc"] for c in other.candidates] != [c["auroc"] for c in digits_choice.candidates]


def test_the_detector_is_left_as_it_was_and_accepts_the_choice(digits_model):
    detector, validation, sources = digits_model
    attributes = dict(vars(detector))
    weights = {k: v.clone() for k, v in detector.model_.state_dict().items()}
    before = detector.score_samples(validation)
    choice = choose_scoring(detector, validation, sources, seed=3, max_normals=40)
    assert vars(detector).keys() == attributes.keys()
    assert all(getattr(detector, k) is v for k, v in attributes.items())
    assert all(torch.equal(v, detector.model_.state_dict()[k]) for k, v in weights.items())
    np.testing.assert_array_equal(detector.score_samples(validation), before)
    assert choice.n_normals == choice.n_synthetic == 40
    chosen = copy.deepcopy(detector).set_params(**choice.params)
    chosen.check_params()
    scores = chosen.fit_scoring(validation).score_samples(validation[:10])
    assert np.isfinite(scores).all()


def test_too_few_normals_for_the_fused_density_skip_it(digits_model):
    detector, validation, sources = digits_model
    choice = choose_scoring(detector, validation[:8], sources, seed=0)
    fused = next(c for c in choice.candidates if c["score"] == "fused")
    assert fused["auroc"] is None and "at least" in fused["skipped"]
    assert choice.candidates[-1] is fused and choice.params["score"] != "fused"


@pytest.mark.skipif(not (BOTTLE / "train" / "good").is_dir(), reason="MVTec bottle not available")
def test_a_tiny_model_on_bottle_images_gets_a_valid_choice():
    bundle = load_data(f"mvtec:{BOTTLE}", image_size=32)
    train, validation = bundle.train[:40], bundle.train[40:64]
    detector = GONDetector(epochs=1, batch_size=20, width=8, latent_dim=16, seed=0).fit(train)
    choice = choose_scoring(detector, validation, train, seed=0)
    assert choice.n_normals == 24 and len(choice.candidates) == len(candidate_grid((3, 32, 32)))
    detector.set_params(**choice.params).check_params()
    assert 0 <= choice.candidates[0]["auroc"] <= 1


def test_too_few_validation_images_fall_back_to_the_plain_error(mnist_small, caplog):
    """fit with score auto and 3 validation images: no ranking is possible; the fit still
    succeeds with the plain error, says so, and records why."""
    train, test = mnist_small
    detector = GONDetector(epochs=1, batch_size=50, width=8, latent_dim=8, score="auto", seed=0)
    with caplog.at_level("WARNING", logger="gonomaly"):
        detector.fit(train[:100], validation=test[:3])
    assert "too few to choose a scoring" in caplog.text
    assert {k: detector.effective(k) for k in ("error_map", "sigma", "score")} == \
        {"error_map": "l2", "sigma": 0.0, "score": "mse"}
    assert "fewer than 4" in detector.scoring_choice_.to_json()["note"]
    assert np.isfinite(detector.score_samples(test[:5])).all()
