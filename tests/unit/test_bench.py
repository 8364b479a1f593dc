"""``gonomaly.bench``: the aggregation over seeds and the per-seed configs (no training)."""

from pathlib import Path

import numpy as np
import pytest

from gonomaly.bench import MnistCBenchmarkConfig, MvtecBenchmarkConfig, aggregate_seeds, figure, format_mnist_c_summary
from gonomaly.workflow import DetectorConfig


def test_aggregate_seeds_numbers_become_mean_and_sample_std():
    seeds = [{"model": "gon", "auroc": 0.9, "groups": {"a": {"n": 10, "flagged": 4, "auroc": None}},
              "list": [1, 2]},
             {"model": "gon", "auroc": 0.8, "groups": {"a": {"n": 10, "flagged": 7, "auroc": None}},
              "list": [3, 6]}]
    summary = aggregate_seeds(seeds)
    assert summary["model"] == "gon" and summary["groups"]["a"]["auroc"] is None
    assert summary["auroc"]["mean"] == pytest.approx(0.85)
    assert summary["auroc"]["std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert summary["groups"]["a"]["n"] == {"mean": 10.0, "std": 0.0}
    assert summary["groups"]["a"]["flagged"]["std"] == pytest.approx(np.sqrt(4.5))
    assert [entry["mean"] for entry in summary["list"]] == [2.0, 4.0]


def test_aggregate_seeds_one_seed_mixed_names_and_missing_numbers():
    assert aggregate_seeds([{"x": 3}]) == {"x": {"mean": 3.0, "std": 0.0}}
    assert aggregate_seeds(["ssim", "l2"]) == ["ssim", "l2"]  # names that differ are listed
    assert aggregate_seeds([0.5, None]) is None
    assert aggregate_seeds([True, True]) is True  # flags are not numbers


def test_figure_formats_one_seed_or_mean_and_std():
    assert figure(0.91234, 3) == "0.912" and figure(None, 3) == "-"
    assert figure({"mean": 0.91234, "std": 0.0123}, 3) == "0.912 +- 0.012"


def test_with_seed_sets_the_seed_and_writes_no_file(tmp_path):
    config = MnistCBenchmarkConfig(detector=DetectorConfig(seed=7), json_path=tmp_path / "b.json")
    assert config.seed_list == [7]
    config = MnistCBenchmarkConfig(detector=DetectorConfig(seed=7), seeds=(0, 2), json_path=tmp_path / "b.json")
    one = config.with_seed(2)
    assert config.seed_list == [0, 2] and one.detector.seed == 2 and one.json_path is None
    assert one.seed_list == [2] and one.detector.epochs == config.detector.epochs


def test_mvtec_figures_of_several_seeds_go_to_one_folder_each(tmp_path):
    one = MvtecBenchmarkConfig(root=Path("r"), figures=tmp_path)
    several = MvtecBenchmarkConfig(root=Path("r"), figures=tmp_path, seeds=(0, 1))
    assert one.with_seed(0).figures == tmp_path
    assert several.with_seed(1).figures == tmp_path / "seed1" and several.with_seed(1).detector.seed == 1


def test_mnist_c_summary_table_cells():
    run = {"model": "gon", "score": "mse", "image_auroc": {"mean": 0.9, "std": 0.01},
           "image_aupr": {"mean": 0.99, "std": 0.001},
           "train_seconds": {"mean": 150.0, "std": 3.0}, "score_seconds": {"mean": 26.0, "std": 1.0},
           "confusion": {k: {"mean": v, "std": 1.0} for k, v in
                         {"tn": 1909.0, "fp": 91.0, "tp": 20681.0, "fn": 7319.0}.items()},
           "groups": {"normal": {"n": {"mean": 2000.0, "std": 0.0}, "flagged": {"mean": 91.0, "std": 1.0},
                                 "auroc": None},
                      "scale": {"n": {"mean": 2000.0, "std": 0.0}, "flagged": {"mean": 50.0, "std": 2.5},
                                "auroc": {"mean": 0.445, "std": 0.0104}}}}
    table = format_mnist_c_summary({"protocol": {"seeds": [0, 1, 2]}, "summary": [run]})
    assert "over seeds 0,1,2" in table and "| corruption | GON mse |" in table
    assert "| normal | 91.0 +- 1.0 / 2000 |" in table
    assert "| scale | 50.0 +- 2.5 / 2000, 0.445 +- 0.010 |" in table
    assert "| **clean passed** | 1909.0 +- 1.0 / 2,000 |" in table
    assert "| **corrupted flagged** | 20681.0 +- 1.0 / 28,000 |" in table
    assert "| **pooled AUROC** | 0.9000 +- 0.0100 |" in table
