"""The new models through the command line, and ``gonomaly benchmark models``."""

import json

import numpy as np

from cli_helpers import run_cli
from gonomaly import ImplicitGONDetector, ReconstructionDetector


def test_train_implicit_gon_and_score(tmp_path, capsys, mnist_small):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "-q", "train", "--model", "implicit-gon", "--data", "mnist:n_train=64",
                           "--out", str(run), "--epochs", "1", "--batch-size", "32", "--latent-dim", "8")
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "implicit-gon"
    params = config["hyperparameters"]
    assert {k: params[k] for k in ("epochs", "batch_size", "lr", "score", "seed", "latent_dim", "width",
                                   "fourier_features", "coordinate_fraction", "training_precision")} == {
        "epochs": 1, "batch_size": 32, "lr": 1e-4, "score": "fused", "seed": 0, "latent_dim": 8,
        "width": 256, "fourier_features": 4, "coordinate_fraction": 0.25, "training_precision": "bf16"}
    detector = ReconstructionDetector.load(run)
    assert isinstance(detector, ImplicitGONDetector)
    assert detector.reconstruct(mnist_small[1][:2], size=56).shape == (2, 1, 56, 56)


def test_benchmark_models_smoke(tmp_path, capsys):
    json_path = tmp_path / "models.json"
    code, stdout, err = run_cli(capsys, "-q", "benchmark", "models", "--models", "vae,cae", "--epochs", "1",
                                "--batch-size", "32", "--n-train", "128", "--n-test", "20",
                                "--one-class-n-train", "64", "--one-class-n-test", "100",
                                "--digits", "0,1", "--json", str(json_path))
    assert code == 0, err
    result = json.loads(json_path.read_text())
    vae, cae = result["per_seed"]["0"]["models"]["vae"], result["per_seed"]["0"]["models"]["cae"]
    assert 850_000 < vae["parameters"] < 880_000  # sized like the variational GON (857,257)
    assert set(vae["one_class_auroc"]) == {"0", "1"}
    for row in (vae, cae):
        assert 0 <= row["mnist_c_auroc"]["mse"] <= 1 and 0 < row["clean_mse"] < 1
        assert row["one_class_mean"] == np.mean(list(row["one_class_auroc"].values()))
    assert f"| vae | 866,941 | {vae['steps']} x 32 |" in stdout and "| model | 0 | 1 | mean |" in stdout
    code, _, err = run_cli(capsys, "benchmark", "models", "--digits", "0,12")
    assert code == 1 and "--digits 0,12" in err
