"""Interruption, resume, periodic checkpoints, crash safety and the one-writer lock, on real
MNIST slices. Every training here runs single-threaded (the subprocesses too): the results are
compared bit for bit, and the 2-core test machine is shared."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from gonomaly import GONDetector, GonomalyError, ReconstructionDetector
from gonomaly.checkpoint import NEW_RESUME_DIR, OLD_RESUME_DIR, RESUME_DIR, has_checkpoint, load_checkpoint
from gonomaly.errors import TrainingInterrupted
from gonomaly.lock import RunLock

RUN_FILES = ["config.json", "history.json", "model.safetensors", "scoring.safetensors",
             "train_errors.npy"]
SPEC = "mnist:n_train=256"
# The plain loop on all 256 digits (no validation split), which the inline loop below spells
# out; resume with a validation split and early stopping: test_validation_training.py.
TRAIN_ARGS = ["--data", SPEC, "--epochs", "2", "--batch-size", "32", "--seed", "0", "--val-fraction", "0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GONOMALY_OFFLINE": "1"}


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def train256():
    from gonomaly.data import load_data

    return load_data(SPEC, seed=0).train


@pytest.fixture(scope="module")
def reference(train256):
    """The uninterrupted run that every interrupted one must reproduce exactly."""
    return GONDetector(epochs=2, batch_size=32, seed=0, val_fraction=0).fit(train256)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gonomaly.cli", "-q", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(condition, timeout: float = 120, what: str = "condition", process=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process ended ({process.returncode}) before {what}: "
                                 f"{process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def progress_step(run: Path) -> int:
    """Global step of the newest readable checkpoint, -1 when there is none."""
    for name in (RESUME_DIR, NEW_RESUME_DIR, OLD_RESUME_DIR):
        try:
            return json.loads((run / name / "progress.json").read_text())["global_step"]
        except (OSError, ValueError, KeyError):
            continue
    return -1


# -- exact replay ------------------------------------------------------------------------------
def test_fit_is_bit_identical_to_the_plain_loop_with_or_without_checkpoints(train256, reference, tmp_path):
    """The loop before resumable training (seed, init, one randperm per epoch), inline."""
    x = torch.from_numpy(train256)
    torch.manual_seed(0)
    model = GONDetector(epochs=2, batch_size=32).build_model((1, 28, 28))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order_rng = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(2):
        order = torch.randperm(len(x), generator=order_rng)
        for step in range(8):
            loss = model.training_loss(x[order[step * 32:(step + 1) * 32]]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    assert_same_weights(model, reference.model_)
    checkpointed = GONDetector(epochs=2, batch_size=32, seed=0, val_fraction=0).fit(
        train256, checkpoint_dir=tmp_path / "run", checkpoint_every=1)
    assert_same_weights(checkpointed.model_, reference.model_)
    assert checkpointed.loss_history_ == reference.loss_history_
    assert load_checkpoint(tmp_path / "run").progress.global_step == 16
    checkpointed.save(tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run")) == RUN_FILES  # the checkpoint is gone


@pytest.mark.parametrize("stop_after, how", [(5, "callback"), (8, signal.SIGINT), (11, signal.SIGTERM)],
                         ids=["callback-mid-epoch", "SIGINT-epoch-end", "SIGTERM-mid-epoch"])
def test_interrupt_in_process_then_resume_gives_the_same_weights(train256, reference, tmp_path,
                                                                  stop_after, how):
    """Stopped mid-epoch (5, 11) or at an epoch's end (8): by the hook's flag or a real signal."""
    run = tmp_path / "run"
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def hook(info):
        assert info.global_step == info.epoch * 8 + info.step + 1
        if info.global_step == stop_after:
            if how == "callback":
                return True
            signal.raise_signal(how)  # the handler runs now, in this thread
        return None

    with pytest.raises(TrainingInterrupted) as caught:
        GONDetector(epochs=2, batch_size=32, seed=0, val_fraction=0).fit(train256, checkpoint_dir=run,
                                                                         on_step=hook)
    assert caught.value.exit_code == (143 if how == signal.SIGTERM else 130)
    assert f"gonomaly train --resume {run}" in str(caught.value)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    state = load_checkpoint(run)
    p = state.progress
    assert (p.epoch, p.step, p.global_step) == divmod(stop_after, 8) + (stop_after,)
    assert p.loss_history == reference.loss_history_[:stop_after]
    assert not (run / ".lock").exists() and not (run / "config.json").exists()

    resumed = ReconstructionDetector.resume(run, train256)
    assert isinstance(resumed, GONDetector)
    assert_same_weights(resumed.model_, reference.model_)
    assert resumed.loss_history_ == reference.loss_history_
    np.testing.assert_array_equal(resumed.train_errors_, reference.train_errors_)
    assert resumed.threshold_ == reference.threshold_
    resumed.save(run)
    assert sorted(os.listdir(run)) == RUN_FILES


def test_sigint_to_a_cli_training_then_resume(reference, tmp_path):
    run = tmp_path / "run"
    process = cli("train", *TRAIN_ARGS, "--out", str(run), "--checkpoint-every", "2")
    wait_for(lambda: progress_step(run) >= 2, what="the first periodic checkpoint", process=process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gonomaly: interrupted by SIGINT after epoch")
    assert lines[0].endswith(f"resume with: gonomaly train --resume {run}")
    assert 2 <= load_checkpoint(run).progress.global_step < 16
    done = subprocess.run([sys.executable, "-m", "gonomaly.cli", "-q", "train", "--resume", str(run)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(run)) == RUN_FILES
    loaded = ReconstructionDetector.load(run)
    assert_same_weights(loaded.model_, reference.model_)
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["spec"] == SPEC and config["training"]["steps"] == 16


# -- crashes -----------------------------------------------------------------------------------
def test_sigkill_at_random_times_never_breaks_resume(reference, tmp_path):
    """A training that checkpoints every step, killed at random moments (often in the middle of
    writing ~10 MB of checkpoint), resumed each time: the last resume gives the exact weights."""
    run, rng, kills, mid_write, finished = tmp_path / "run", random.Random(0), 0, 0, False
    process = cli("train", *TRAIN_ARGS, "--out", str(run), "--checkpoint-every", "1")
    for round_ in range(6):
        before = progress_step(run)
        wait_for(lambda: progress_step(run) > before or process.poll() is not None,  # noqa: B023
                 what="progress", process=None)
        if process.poll() is not None:
            break
        if round_ % 2:  # at a random moment
            time.sleep(rng.uniform(0, 0.15))
        else:  # as soon as the next checkpoint is being written
            wait_for(lambda: (run / NEW_RESUME_DIR).exists() or process.poll() is not None,  # noqa: B023
                     what="a checkpoint write")
        process.kill()
        process.wait()
        kills += 1
        mid_write += (run / NEW_RESUME_DIR).exists() or (run / OLD_RESUME_DIR).exists()
        if not has_checkpoint(run):  # killed after the run folder was complete
            finished = True
            break
        state = load_checkpoint(run)  # always complete and verified
        assert state.progress.loss_history == reference.loss_history_[:state.progress.global_step]
        process = cli("train", "--resume", str(run))  # the checkpoint remembers --checkpoint-every 1
    if not finished:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert sorted(os.listdir(run)) == RUN_FILES
    assert kills >= 3
    assert_same_weights(ReconstructionDetector.load(run).model_, reference.model_)
    print(f"{kills} kills, {mid_write} during a checkpoint swap or write")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, train256):
    """Two small saved detectors, A and B, with different weights."""
    root = tmp_path_factory.mktemp("two")
    runs = {}
    for seed, name in ((0, "a"), (1, "b")):
        detector = GONDetector(latent_dim=8, width=8, epochs=1, batch_size=64, seed=seed)
        runs[name] = detector.fit(train256[:128]).save(root / name)
    return runs


def _weights_of(run: Path) -> dict[str, torch.Tensor]:
    return ReconstructionDetector.load(run).model_.state_dict()


def _which(detector, expected: dict) -> str:
    for name, weights in expected.items():
        if all(torch.equal(v, weights[k]) for k, v in detector.model_.state_dict().items()):
            return name
    raise AssertionError("loaded weights are neither A nor B")


WRITER = """
import sys, time
from gonomaly import ReconstructionDetector
a, b, target = (ReconstructionDetector.load(sys.argv[1]), ReconstructionDetector.load(sys.argv[2]),
                sys.argv[3])
for i in range(int(sys.argv[4])):
    (a if i % 2 else b).save(target)
"""


def test_concurrent_saves_and_kills_never_break_load(two_runs, tmp_path):
    """One process overwrites a completed run folder with A, B, A, ... while this one loads it:
    every load gives exactly A or B. Then writers are SIGKILLed at random times, mid-save."""
    expected = {name: _weights_of(path) for name, path in two_runs.items()}
    target = tmp_path / "target"
    ReconstructionDetector.load(two_runs["a"]).save(target)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(two_runs["a"]), str(two_runs["b"]),
                               str(target), "60"], env=ENV, stderr=subprocess.PIPE, text=True)
    seen = {"a": 0, "b": 0}
    while writer.poll() is None:
        seen[_which(ReconstructionDetector.load(target), expected)] += 1
    assert writer.returncode == 0, writer.stderr.read()
    assert seen["a"] + seen["b"] >= 5
    rng = random.Random(1)
    for _ in range(4):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(two_runs["a"]),
                                   str(two_runs["b"]), str(target), "100000"], env=ENV)
        mtime = (target / "config.json").stat().st_mtime_ns
        wait_for(lambda: (target / "config.json").stat().st_mtime_ns != mtime, what="a save")  # noqa: B023 - waited for at once
        time.sleep(rng.uniform(0, 0.1))
        writer.kill()
        writer.wait()
        _which(ReconstructionDetector.load(target), expected)  # never broken
    print(f"loads during saves: {seen}")


def test_a_crash_at_any_point_of_a_save_leaves_a_loadable_folder(two_runs, tmp_path, monkeypatch):
    """Simulate a crash at every file write and every rename of a save."""
    import gonomaly.store as store

    expected = {name: _weights_of(path) for name, path in two_runs.items()}
    b = ReconstructionDetector.load(two_runs["b"])

    class Crash(BaseException):
        pass

    for target_name in ("write_synced", "os.replace"):
        for crash_at in range(5):  # five files: weights, history, errors, scoring, config
            folder = tmp_path / f"{target_name}{crash_at}"
            ReconstructionDetector.load(two_runs["a"]).save(folder)
            calls = []
            real = store.write_synced if target_name == "write_synced" else os.replace

            def crashing(*args, real=real, crash_at=crash_at, calls=calls):
                if len(calls) == crash_at:
                    raise Crash
                calls.append(args)
                return real(*args)

            if target_name == "write_synced":
                monkeypatch.setattr(store, "write_synced", crashing)
            else:
                monkeypatch.setattr(store.os, "replace", crashing)
            with pytest.raises(Crash):
                b.save(folder)
            monkeypatch.undo()
            got = _which(ReconstructionDetector.load(folder), expected)
            # Until the staged set is complete the old run stays; once some file is replaced,
            # the loader sees the mismatch and uses the complete staged set.
            old = target_name == "write_synced" or crash_at == 0
            assert got == ("a" if old else "b"), (target_name, crash_at)
            ReconstructionDetector.load(two_runs["a"]).save(folder)  # the next save rolls forward
            assert _which(ReconstructionDetector.load(folder), expected) == "a"
            assert not (folder / ".saving").exists()


def test_checkpoint_swap_interrupted_between_renames(train256, tmp_path, monkeypatch):
    """Crash between 'resume -> .resume-old' and '.resume-new -> resume': still resumable."""
    import gonomaly.checkpoint as checkpoint

    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):  # leaves the step-3 checkpoint
        GONDetector(latent_dim=8, width=8, epochs=2, batch_size=64, seed=0).fit(
            train256, checkpoint_dir=run, checkpoint_every=1,
            on_step=lambda info: info.global_step == 3)
    real_rename, renames = os.rename, []

    def rename(src, dst):
        renames.append(dst)
        if len(renames) == 2:
            raise KeyboardInterrupt  # the process dies here
        return real_rename(src, dst)

    monkeypatch.setattr(checkpoint.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        GONDetector(latent_dim=8, width=8, epochs=2, batch_size=64, seed=0).fit(
            train256, checkpoint_dir=run, resume=True, checkpoint_every=1)
    monkeypatch.undo()
    assert not (run / RESUME_DIR).exists() and (run / OLD_RESUME_DIR).exists()
    assert load_checkpoint(run).progress.global_step == 4  # the complete .resume-new
    full = GONDetector(latent_dim=8, width=8, epochs=2, batch_size=64, seed=0).fit(train256)
    resumed = ReconstructionDetector.resume(run, train256, checkpoint_every=1)
    assert_same_weights(resumed.model_, full.model_)
    assert not (run / OLD_RESUME_DIR).exists() and not (run / NEW_RESUME_DIR).exists()


# -- refusals ----------------------------------------------------------------------------------
@pytest.fixture
def interrupted_run(train256, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        GONDetector(latent_dim=8, width=8, epochs=2, batch_size=32, seed=0).fit(
            train256, checkpoint_dir=run, checkpoint_metadata={"data": {"spec": SPEC}},
            on_step=lambda info: info.global_step == 3)
    return run


def test_resume_refuses_conflicts_and_tampering(interrupted_run, train256, tmp_path, capsys):
    run = interrupted_run
    for args, message in [
        (["--epochs", "3"], "--epochs 3: conflicts with the checkpoint"),
        (["--model", "cae"], "--model cae: conflicts"),
        (["--data", "mnist"], "--data mnist: conflicts"),
        (["--latent-dim", "100"], "--latent-dim 100: conflicts"),
        (["--out", str(tmp_path / "elsewhere")], "conflicts with --resume"),
    ]:
        code, _, err = run_cli(capsys, "train", "--resume", str(run), *args)
        assert code == 1 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "train", "--out", str(run), "--data", SPEC)
    assert code == 1 and "holds the checkpoint of an interrupted training" in err
    with pytest.raises(GonomalyError, match="made with hyperparameters"):
        GONDetector(latent_dim=9, width=8, epochs=2, batch_size=32).fit(
            train256, checkpoint_dir=run, resume=True)
    with pytest.raises(GonomalyError, match="made with data_sha256"):
        GONDetector(latent_dim=8, width=8, epochs=2, batch_size=32).fit(
            train256[::-1], checkpoint_dir=run, resume=True)
    state, progress = run / RESUME_DIR / "state.safetensors", run / RESUME_DIR / "progress.json"
    original = state.read_bytes(), progress.read_text()
    state.write_bytes(original[0][:-3] + b"xyz")
    with pytest.raises(GonomalyError, match="sha256 does not match progress.json"):
        ReconstructionDetector.resume(run, train256)
    state.write_bytes(original[0])
    doc = json.loads(original[1])
    for key, value in [("epoch", 7), ("step", -1), ("loss_history", [1.0]), ("epoch", "0")]:
        progress.write_text(json.dumps({**doc, key: value}))
        with pytest.raises(GonomalyError, match="progress"):
            ReconstructionDetector.resume(run, train256)
    progress.write_text(original[1][:40])
    with pytest.raises(GonomalyError, match="not valid JSON"):
        ReconstructionDetector.resume(run, train256)
    progress.write_text(original[1])
    resumed = ReconstructionDetector.resume(run, train256)
    assert len(resumed.loss_history_) == 2 * 7  # 218 training digits (38 of 256 held out), batch 32


def test_resume_by_the_cli_of_a_library_checkpoint(interrupted_run, capsys):
    code, _, err = run_cli(capsys, "train", "--resume", str(interrupted_run))
    assert code == 0, err
    assert sorted(os.listdir(interrupted_run)) == RUN_FILES
    code, _, err = run_cli(capsys, "train", "--resume", str(interrupted_run))
    assert code == 1 and "no checkpoint to resume" in err


# -- the lock ----------------------------------------------------------------------------------
def test_a_second_writer_fails_at_once(tmp_path):
    run = tmp_path / "run"
    first = cli("train", "--data", SPEC, "--epochs", "50", "--batch-size", "32", "--out", str(run),
                "--checkpoint-every", "1")
    wait_for(lambda: progress_step(run) >= 1, what="training", process=first)
    message = f"gonomaly: error: {run}: in use by another gonomaly process (pid {first.pid})"
    for args in (["train", "--data", SPEC, "--out", str(run)], ["train", "--resume", str(run)]):
        second = subprocess.run([sys.executable, "-m", "gonomaly.cli", *args], env=ENV,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and second.stderr.strip() == message, second.stderr
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 143 and "interrupted by SIGTERM" in err, err
    assert not (run / ".lock").exists()  # released and removed on exit
    # And the other way round: this process holds it, a subprocess is refused.
    with RunLock(run):
        with RunLock(run):  # re-entrant within a process
            pass
        second = subprocess.run([sys.executable, "-m", "gonomaly.cli", "train", "--resume", str(run)],
                                env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        expected = f"gonomaly: error: {run}: in use by another gonomaly process (pid {os.getpid()})"
        assert second.stderr.strip() == expected
    assert not (run / ".lock").exists()


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from gonomaly.lock import "
                               "RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); "
                               "time.sleep(600)", str(run)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(GonomalyError, match=rf"in use by another gonomaly process \(pid {holder.pid}\)"):
        RunLock(run).acquire()
    holder.kill()
    holder.wait()
    assert (run / ".lock").exists()  # left behind by the killed process, but not locked
    with RunLock(run):
        pass


# -- no pickle ---------------------------------------------------------------------------------
FORBIDDEN = re.compile(r"\bc?[pP]ickle\b|\bdill\b|\bjoblib\b|torch\.load\b|allow_pickle\s*=\s*True"
                       r"|weights_only\s*=\s*False")


def test_nothing_unpickles_anywhere():
    root = Path(__file__).resolve().parents[2]
    files = [p for d in ("src", "benchmarks", "tests") for p in (root / d).rglob("*.py")
             if p.resolve() != Path(__file__).resolve()]
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            assert not FORBIDDEN.search(line), f"{path}:{number}: {line.strip()}"
        if path.is_relative_to(root / "tests"):
            continue
        for call in re.finditer(r"np\.load\(", text):  # every np.load in the package says so
            assert "allow_pickle=False" in text[call.start():text.index(")", call.start()) + 40], \
                f"{path}: np.load without allow_pickle=False"
