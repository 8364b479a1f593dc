"""``gonomaly benchmark ... --seeds``: the whole protocol per seed, and mean +- std over them."""

import json

import numpy as np
import pytest

from cli_helpers import run_cli

TINY = ("-q", "benchmark", "mnist-c", "--epochs", "1", "--models", "cae", "--batch-size", "64",
        "--data", "mnist-c:corruptions=stripe,scale,n_train=200,n_test=30")


def _without_times(runs):
    return [{k: v for k, v in run.items() if not k.endswith("seconds")} for run in runs]


def test_mnist_c_over_two_seeds_aggregates_the_per_seed_numbers(tmp_path, capsys, single_thread):
    code, stdout, err = run_cli(capsys, *TINY, "--seeds", "0,1", "--json", str(tmp_path / "b.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["protocol"]["seeds"] == [0, 1] and "seed" not in result["protocol"]
    per_seed = [result["per_seed"][s]["runs"] for s in ("0", "1")]
    assert [result["per_seed"][s]["protocol"]["seed"] for s in ("0", "1")] == [0, 1]
    assert _without_times(per_seed[0]) != _without_times(per_seed[1])  # the seeds differ
    for i, summary in enumerate(result["summary"]):
        assert (summary["model"], summary["score"]) == (per_seed[0][i]["model"], per_seed[0][i]["score"])
        pairs = [(summary["image_auroc"], [runs[i]["image_auroc"] for runs in per_seed]),
                 (summary["confusion"]["tp"], [runs[i]["confusion"]["tp"] for runs in per_seed])]
        pairs += [(summary["groups"][g][key], [runs[i]["groups"][g][key] for runs in per_seed])
                  for g in ("stripe", "scale") for key in ("flagged", "auroc")]
        for entry, values in pairs:
            assert entry["mean"] == pytest.approx(np.mean(values))
            assert entry["std"] == pytest.approx(np.std(values, ddof=1))
    assert summary["groups"]["normal"]["auroc"] is None
    assert "mean +- std over seeds 0,1" in stdout and "| corruption | CAE mse | CAE fused |" in stdout
    scale = result["summary"][0]["groups"]["scale"]
    assert (f"| scale | {scale['flagged']['mean']:.1f} +- {scale['flagged']['std']:.1f} / 30, "
            f"{scale['auroc']['mean']:.3f} +- {scale['auroc']['std']:.3f} |") in stdout

    # Seed 1 of the pair is the same run as --seed 1 alone.
    code, _, err = run_cli(capsys, *TINY, "--seed", "1", "--json", str(tmp_path / "one.json"))
    assert code == 0, err
    alone = json.loads((tmp_path / "one.json").read_text())["per_seed"]["1"]["runs"]
    assert _without_times(alone) == _without_times(per_seed[1])


@pytest.mark.parametrize("seeds", ["0,x", "1,1", ","])
def test_bad_seeds_are_refused_in_one_line(capsys, seeds):
    code, _, err = run_cli(capsys, "benchmark", "mnist-c", "--seeds", seeds)
    assert code == 1 and f"--seeds {seeds}:" in err and len(err.strip().splitlines()) == 1


def test_models_over_two_seeds_prints_and_keeps_the_mean_and_std(tmp_path, capsys, single_thread):
    code, stdout, err = run_cli(capsys, "-q", "benchmark", "models", "--models", "cae", "--epochs", "1",
                                "--batch-size", "32", "--n-train", "96", "--n-test", "20",
                                "--one-class-n-train", "48", "--one-class-n-test", "60", "--digits", "1",
                                "--seeds", "3,4", "--json", str(tmp_path / "m.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "m.json").read_text())
    rows = [result["per_seed"][s]["models"]["cae"] for s in ("3", "4")]
    summary = result["summary"]["cae"]
    auroc = [row["mnist_c_auroc"]["mse"] for row in rows]
    assert summary["mnist_c_auroc"]["mse"]["mean"] == pytest.approx(np.mean(auroc))
    assert summary["one_class_auroc"]["1"]["std"] == pytest.approx(
        np.std([row["one_class_auroc"]["1"] for row in rows], ddof=1))
    assert summary["parameters"] == {"mean": rows[0]["parameters"], "std": 0.0}
    mean, std = summary["mnist_c_auroc"]["mse"]["mean"], summary["mnist_c_auroc"]["mse"]["std"]
    assert f"| {mean:.4f} +- {std:.4f} |" in stdout.split("=== seed 4")[1]
