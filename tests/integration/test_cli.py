import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from gonomaly.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    main(["-q", "train", "--model", "gon", "--data", "mnist:n_train=600", "--out", str(run),
          "--epochs", "2", "--batch-size", "32", "--seed", "1"])
    return run


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory, mnist_small):
    folder = tmp_path_factory.mktemp("pngs")
    for i, image in enumerate(mnist_small[1][:5]):
        Image.fromarray((image[0] * 255).round().astype(np.uint8)).save(folder / f"digit{i}.png")
    return folder


def test_train_writes_a_complete_run_folder(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "gon" and config["data"]["spec"] == "mnist:n_train=600"
    assert config["data"]["n_train"] == 600 and config["hyperparameters"]["seed"] == 1
    assert config["threshold"]["rule"] == "fpr:0.05" and np.isfinite(config["threshold"]["value"])
    assert config["threshold"]["calibration"]["n"] == config["validation"]["n_validation"] == 90
    assert {"torch", "numpy", "gonomaly"} <= set(config["versions"])
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 2 * 16  # 510 training digits (90 held out) at batch 32
    assert [step for step, _ in history["validation"]] == [16, 32]
    assert (run_dir / "model.safetensors").stat().st_size > 1_000_000


def test_evaluate_prints_table_and_writes_json(run_dir, tmp_path, capsys):
    json_path = tmp_path / "metrics.json"
    code, out, _ = run_cli(capsys, "evaluate", str(run_dir), "--data",
                           "mnist-c:corruptions=impulse_noise,stripe,n_test=100", "--json", str(json_path))
    assert code == 0 and "impulse_noise" in out and "AUROC" in out
    metrics = json.loads(json_path.read_text())
    expected = {"model", "dataset", "n_normal", "n_anomalous", "threshold", "confusion", "accuracy",
                "precision", "recall", "f1", "image_auroc", "image_aupr", "groups"}
    assert expected <= set(metrics)
    assert metrics["n_normal"] == 100 and metrics["n_anomalous"] == 200
    # fpr:0.05 on 90 validation digits: the 87th smallest score, promising 4/91.
    alarms = metrics["false_alarms"]
    assert alarms["expected"] == pytest.approx(4 / 91) and alarms["guaranteed"] and alarms["n_normal"] == 100
    assert f"false alarms: {alarms['flagged']}/100 normal test images" in out and "expected at most 4.40%" in out
    assert metrics["groups"]["stripe"]["n"] == 100 and metrics["groups"]["stripe"]["auroc"] > 0.9
    saved = np.load(run_dir / "eval-mnist-c_corruptions_impulse_noise_stripe_n_test_100" / "scores.npz")
    assert saved["scores"].shape == (300,) and set(saved["groups"]) == {"normal", "impulse_noise", "stripe"}


def test_score_files_and_folders(run_dir, digit_pngs, capsys):
    code, out, _ = run_cli(capsys, "score", str(run_dir), str(digit_pngs), "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 5
    assert lines[0]["path"].endswith("digit0.png") and lines[0]["label"] in (0, 1)
    code, out, _ = run_cli(capsys, "score", str(run_dir), str(digit_pngs / "digit3.png"))
    path, value, label = out.strip().split("\t")
    assert float(value) == pytest.approx(lines[3]["score"], rel=1e-5) and label in ("normal", "anomalous")


def _bad_inputs(tmp_path, digit_pngs):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    Image.new("L", (32, 32)).save(tmp_path / "big.png")
    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "red.png")
    nan = np.zeros((28, 28), np.float32)
    nan[4, 4] = np.nan
    Image.fromarray(nan, mode="F").save(tmp_path / "nan.tiff")
    return [
        (["score", "{run}", str(tmp_path / "missing.png")], "missing.png: no such file"),
        (["score", "{run}", str(tmp_path / "broken.png")], "broken.png: cannot read image"),
        (["score", "{run}", str(tmp_path / "big.png")], "big.png: image is 32x32"),
        (["score", "{run}", str(tmp_path / "red.png")], "red.png: colour image"),
        (["score", "{run}", str(tmp_path / "empty")], "empty: folder has no image files"),
        (["score", "{run}", str(tmp_path / "nan.tiff")], "nan.tiff: image contains NaN"),
        (["evaluate", "{run}", "--data", "bogus"], "data spec 'bogus': unknown kind"),
        (["evaluate", str(tmp_path / "no-run"), "--data", "mnist"], "no-run/config.json: not found"),
        (["train", "--data", "mnist", "--out", str(tmp_path / "r"), "--threshold", "median"], "unknown rule"),
    ]


def test_bad_input_gives_one_line_error_and_nonzero_exit(run_dir, digit_pngs, tmp_path, capsys):
    for args, message in _bad_inputs(tmp_path, digit_pngs):
        code, out, err = run_cli(capsys, *[a.format(run=run_dir) for a in args])
        assert code == 1, (args, err)
        assert message in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_real_process_exit_code_and_debug_traceback(tmp_path):
    command = [sys.executable, "-m", "gonomaly.cli", "evaluate", str(tmp_path), "--data", "mnist"]
    plain = subprocess.run(command, capture_output=True, text=True)
    assert plain.returncode == 1 and plain.stderr.startswith("gonomaly: error:")
    assert "Traceback" not in plain.stderr
    debug = subprocess.run(command[:3] + ["--debug"] + command[3:], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_usage_error_is_nonzero(capsys):
    code, _, err = run_cli(capsys, "train", "--model", "vit", "--out", "x")
    assert code == 2 and "Invalid value" in err


def test_corrupt_export_round_trips_through_the_official_layout(tmp_path, capsys):
    from gonomaly.data import load_data

    out = tmp_path / "mnist_c"
    code, _, err = run_cli(capsys, "corrupt", "--out", str(out), "--n", "40",
                           "--corruptions", "stripe,fog", "--seed", "5")
    assert code == 0, err
    images = np.load(out / "fog" / "test_images.npy", allow_pickle=False)
    assert images.shape == (40, 28, 28, 1) and images.dtype == np.uint8
    assert np.load(out / "identity" / "test_labels.npy").shape == (40,)
    assert (out / "grid.png").stat().st_size > 5000
    from_files = load_data(f"mnist-c:root={out},corruptions=stripe,fog,n_train=10")
    generated = load_data("mnist-c:corruptions=stripe,fog,n_test=40,n_train=10", seed=5)
    np.testing.assert_array_equal(from_files.test.images, generated.test.images)
    np.testing.assert_array_equal(from_files.test.groups, generated.test.groups)
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "none"), "--data",
                           f"mnist-c:root={tmp_path}/missing")
    assert code == 1


def test_run_writes_results_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "-q", "run", "--out", str(out), "--epochs", "1",
                                "--data", "mnist-c:corruptions=stripe,impulse_noise,n_train=300,n_test=40")
    assert code == 0, err
    assert "stripe" in stdout and "AUROC" in stdout
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert summary["n_normal"] == 40 and summary["n_anomalous"] == 80
    assert json.loads((out / "config.json").read_text())["scoring"]["score"] == "fused"
    html = (out / "report" / "index.html").read_text()
    assert "stripe" in html and "<img" in html
    code, stdout, _ = run_cli(capsys, "report", str(out), "--out", str(tmp_path / "again"))
    assert code == 0 and (tmp_path / "again" / "index.html").read_text() == html


def test_benchmark_mnist_c_smoke(tmp_path, capsys):
    json_path = tmp_path / "bench.json"
    code, stdout, err = run_cli(capsys, "-q", "benchmark", "mnist-c", "--epochs", "1", "--models", "cae",
                                "--data", "mnist-c:corruptions=stripe,n_train=200,n_test=30",
                                "--json", str(json_path))
    assert code == 0, err
    result = json.loads(json_path.read_text())
    assert result["protocol"]["seeds"] == [0] and list(result["per_seed"]) == ["0"]
    runs = result["per_seed"]["0"]["runs"]
    assert [r["score"] for r in runs] == ["mse", "fused"]
    assert runs[0]["groups"]["stripe"]["n"] == 30 and "pooled" in stdout
    assert "mean +- std" not in stdout  # one seed: no summary table
    code, _, err = run_cli(capsys, "benchmark", "mnist-c", "--models", "vit")
    assert code == 1 and "--models: unknown vit" in err


def test_score_streams_with_workers_in_input_order(run_dir, digit_pngs, tmp_path, capsys):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"{i:03d}.png").write_bytes((digit_pngs / f"digit{i % 5}.png").read_bytes())
    _, serial, _ = run_cli(capsys, "score", str(run_dir), str(folder), "--workers", "0",
                           "--batch-size", "7")
    _, parallel, _ = run_cli(capsys, "score", str(run_dir), str(folder), "--workers", "2",
                             "--batch-size", "7")
    assert serial == parallel and len(serial.splitlines()) == 40
    assert [line.split("\t")[0][-7:] for line in serial.splitlines()] == [f"{i:03d}.png" for i in range(40)]
    (folder / "020.png").write_bytes(b"broken")
    code, _, err = run_cli(capsys, "score", str(run_dir), str(folder), "--workers", "2", "--on-error", "fail")
    assert code == 1 and "020.png: cannot read image" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
