"""The ``gonomaly`` command line: train, evaluate, score and the main job, run."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click
import numpy as np

from gonomaly import __version__, distributed
from gonomaly.errors import GonomalyError, TrainingInterrupted
from gonomaly.choices import ERROR_MAPS, LOSSES, SCORES

log = logging.getLogger("gonomaly")

seed_option = click.option("--seed", type=int, default=0, show_default=True,
                           help="Seed for every random source; the same seed gives the same result.")
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                               default=None, help="Folder with the dataset's files (first in the search order).")
device_option = click.option("--device", type=click.Choice(distributed.DEVICES), default="auto",
                             show_default=True,
                             help="cuda: this process's GPU (LOCAL_RANK under torchrun); auto: cuda when available.")


def _configure_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gonomaly: %(message)s"))
    log.handlers[:] = [handler]
    main_rank = distributed.env_world().main  # under torchrun, only rank 0 logs progress
    log.setLevel(logging.WARNING if quiet or not main_rank else logging.INFO)
    log.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gonomaly")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and results; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Find anomalous images with Gradient Origin Networks."""
    ctx.obj = {"debug": debug, "quiet": quiet or not distributed.env_world().main}
    _configure_logging(quiet)


MODELS = ["gon", "cae", "implicit-gon", "variational-gon", "vae"]  # detector.DETECTORS' keys


def _make_detector(model: str, *, epochs, batch_size, seed, progress, lr=None, latent_dim=None,
                   threshold="mean-std:2", score="mse", width=None, **options):
    """A detector of ``model``; ``options`` are the map, loss and augmentation hyper-parameters
    (``error_map``, ``sigma``, ``top_k``, ``loss``, ``augment``); ``lr``, ``latent_dim`` and
    ``width`` None take the model's defaults."""
    from gonomaly.detector import DETECTORS

    cls = DETECTORS[model]
    kwargs = dict(epochs=epochs, batch_size=batch_size, lr=lr, threshold=threshold, score=score,
                  seed=seed, progress=progress, **options)
    if latent_dim is not None:
        kwargs["latent_dim"] = latent_dim
    if width is not None:
        kwargs["width"] = width
    return cls(**kwargs)


def _resolve_augment(augment: str, bundle) -> str:
    """``auto``: the category's table entry (``gonomaly.data.mvtec.AUGMENTATIONS``), else none."""
    if augment != "auto":
        return augment
    return bundle.description.get("augment") or ""


def _train(ctx, model, data, out, epochs, batch_size, lr, latent_dim, threshold, score, seed,
           data_dir, *, checkpoints: dict | None = None, image_size=None, augment="", **options):
    """Train and save a run folder, which stays locked against other writers meanwhile.

    ``checkpoints`` ({"every": steps, "minutes": M}, either None) makes SIGINT/SIGTERM write a
    resumable checkpoint to ``out/resume`` (and periodically, when set): ``train`` uses it.
    Under torchrun every rank trains (DDP) and rank 0 alone locks and writes the run folder."""
    import contextlib

    from gonomaly.data import load_data
    from gonomaly.thresholds import ThresholdRule
    from gonomaly.training import RunLock, refuse_checkpoint

    ThresholdRule.parse(threshold)  # fail before loading data, not after training
    world = distributed.world()
    with RunLock(out) if world.main else contextlib.nullcontext():
        fit_options = {}
        if checkpoints is not None and not world.distributed:
            refuse_checkpoint(out)
            fit_options = dict(
                checkpoint_dir=out, checkpoint_every=checkpoints["every"],
                checkpoint_minutes=checkpoints["minutes"],
                checkpoint_metadata={"data": {"spec": data, "data_dir": data_dir and str(Path(data_dir).resolve())},
                                     "checkpoint": checkpoints})
        bundle = load_data(data, data_dir, seed=seed, image_size=image_size)
        log.info("training %s on %d images of %s", model, len(bundle.train), data)
        detector = _make_detector(model, epochs=epochs, batch_size=batch_size, lr=lr,
                                  latent_dim=latent_dim, threshold=threshold, score=score, seed=seed,
                                  progress=not ctx.obj["quiet"],
                                  augment=_resolve_augment(augment, bundle), **options)
        detector.fit(bundle.train, **fit_options)
        if world.main:
            _save_run(detector, out, data, bundle)
    return detector, bundle


def _save_run(detector, out, data, bundle) -> None:
    detector.save(out, metadata={"data": {"spec": data, "source": bundle.source,
                                          **bundle.description}})
    stats = detector.training_stats_
    log.info("trained in %.1f s (%.0f images/s); threshold %s = %.6g; saved to %s",
             stats["seconds"], stats["images_per_s"], detector.threshold_rule_,
             detector.threshold_, out)


def _resume(ctx, run_dir: Path, given: dict, data_dir, checkpoints: dict, device="cpu",
            precision="fp32") -> None:
    """``train --resume``: the options come from the checkpoint; explicit ones must agree."""
    from gonomaly.data import load_data
    from gonomaly.detector import ReconstructionDetector
    from gonomaly.training import RESUME_DIR, RunLock, load_checkpoint

    with RunLock(run_dir):
        state = load_checkpoint(run_dir)
        config = state.config
        metadata = config.get("metadata") if isinstance(config.get("metadata"), dict) else {}
        spec = (metadata.get("data") or {}).get("spec") if isinstance(metadata.get("data"), dict) else None
        if not isinstance(spec, str):
            raise GonomalyError(f"{run_dir / RESUME_DIR}: the checkpoint names no data spec (not made "
                                f"by `gonomaly train`; use ReconstructionDetector.resume)")
        saved = {"model": config.get("model"), "data": spec, "threshold": config.get("threshold"),
                 **(config.get("hyperparameters") or {})}
        for name, value in given.items():
            if saved.get(name) != value:
                flag = "--" + name.replace("_", "-")
                raise GonomalyError(
                    f"{flag} {value}: conflicts with the checkpoint in {run_dir / RESUME_DIR} "
                    f"({flag} {saved.get(name, 'not set')}); leave it out to resume")
        saved_checkpoints = metadata.get("checkpoint") if isinstance(metadata.get("checkpoint"), dict) else {}
        for key in ("every", "minutes"):
            if checkpoints[key] is None:
                checkpoints[key] = saved_checkpoints.get(key)
        data_dir = data_dir or (metadata.get("data") or {}).get("data_dir")
        seed = saved.get("seed", 0)
        shape = config.get("image_shape")
        bundle = load_data(spec, data_dir, seed=seed,
                           image_size=shape[1] if isinstance(shape, list) and len(shape) == 3 else None)
        p = state.progress
        log.info("resuming %s on %d images of %s at epoch %d, step %d (%d steps done)",
                 config.get("model"), len(bundle.train), spec, p.epoch + 1, p.step, p.global_step)
        detector = ReconstructionDetector.resume(
            run_dir, bundle.train, checkpoint_every=checkpoints["every"],
            checkpoint_minutes=checkpoints["minutes"], progress=not ctx.obj["quiet"],
            checkpoint_metadata={**metadata, "checkpoint": checkpoints}, device=device,
            precision=precision)
        _save_run(detector, run_dir, spec, bundle)


# Image size, model width, anomaly maps, training loss and augmentation: passed on as **options.
image_options = [
    click.option("--image-size", type=click.IntRange(8, 1024), default=None,
                 help="Side that MVTec and folder images are resized to [default: 64]."),
    click.option("--width", type=click.IntRange(min=1), default=None,
                 help="Network width (GON: channels of the last stage, 64; CAE: of the first, 32)."),
    click.option("--error-map", type=click.Choice(list(ERROR_MAPS)), default="l2", show_default=True,
                 help="Per-pixel error: l2 (squared, averaged over channels) or ssim (1 - SSIM)."),
    click.option("--sigma", type=click.FloatRange(0, 64), default=0.0, show_default=True,
                 help="Gaussian smoothing of the anomaly map, in pixels (0: none)."),
    click.option("--top-k", type=click.IntRange(min=1), default=100, show_default=True,
                 help="Pixels averaged by --score topk."),
    click.option("--loss", type=click.Choice(list(LOSSES)), default="l2", show_default=True,
                 help="Training loss: l2, or l2+ssim (adds 1 - SSIM per pixel)."),
    click.option("--augment", default="", show_default=True,
                 help="Training augmentation: comma-separated hflip, vflip, rot90; 'auto' takes "
                      "what the MVTec category allows; empty: none."),
]


def _train_options(default_model: str | None, default_epochs: int, default_score: str = "mse"):
    def decorate(function):
        options = [
            click.option("--model", type=click.Choice(MODELS), default=default_model or "gon",
                         show_default=True, help="Detector model."),
            click.option("--epochs", type=click.IntRange(min=1), default=default_epochs, show_default=True),
            click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True),
            click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
                         help="Adam's learning rate [default: 1e-3; implicit-gon 1e-4]."),
            click.option("--latent-dim", type=click.IntRange(min=1), default=None,
                         help="Latent size [default: 100; implicit-gon 32]."),
            click.option("--threshold", default="mean-std:2", show_default=True,
                         help="mean-std:K | quantile:Q | value:X, from the training errors."),
            click.option("--score", type=click.Choice(list(SCORES)), default=default_score,
                         show_default=True,
                         help="mse: mean reconstruction error; fused: density of error, SSIM and "
                              "latent features among the normal training images; max: maximum "
                              "of the smoothed anomaly map; topk: mean of its top-k pixels."),
            *image_options, seed_option, data_dir_option, device_option,
            click.option("--precision", type=click.Choice(distributed.PRECISIONS), default="fp32",
                         show_default=True,
                         help="bf16: mixed-precision training on CUDA (the gradient-origin step "
                              "and the losses stay float32)."),
        ]
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


@cli.command()
@click.option("--data", "data", default="mnist", show_default=True, help="Data SPEC of the normal training images.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder to write (required unless --resume).")
@_train_options(None, 5)
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Continue the interrupted training in this run folder, with the options saved in "
                   "its checkpoint (conflicting options are refused).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None,
              help="Also write a resumable checkpoint every N optimizer steps.")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also write a resumable checkpoint every M minutes.")
@click.pass_context
def train(ctx, model, data, out, epochs, batch_size, lr, latent_dim, threshold, score, seed, data_dir,
          device, precision, resume_dir, checkpoint_every, checkpoint_minutes, **options):
    """Train a detector on normal images and save it to a run folder.

    Ctrl-C or SIGTERM finishes the current step, writes a checkpoint to RUN_DIR/resume and exits
    (130 or 143); `gonomaly train --resume RUN_DIR` continues it exactly.

    Under torchrun (--nproc_per_node=N, --nnodes ...) it trains with DistributedDataParallel:
    --batch-size is per process, the global batch is N times that."""
    world = distributed.env_world()
    if world.distributed and (resume_dir or checkpoint_every or checkpoint_minutes):
        raise GonomalyError(f"--resume, --checkpoint-every and --checkpoint-minutes are not supported "
                            f"under torchrun (world size {world.size}); train in one process to use them")
    with distributed.session(device):
        _train_command(ctx, model, data, out, epochs, batch_size, lr, latent_dim, threshold, score,
                       seed, data_dir, device, precision, resume_dir, checkpoint_every,
                       checkpoint_minutes, world, **options)


def _train_command(ctx, model, data, out, epochs, batch_size, lr, latent_dim, threshold, score, seed,
                   data_dir, device, precision, resume_dir, checkpoint_every, checkpoint_minutes, world,
                   **options):
    from click.core import ParameterSource

    checkpoints = {"every": checkpoint_every, "minutes": checkpoint_minutes}
    if resume_dir is not None:
        if out is not None and out.resolve() != resume_dir.resolve():
            raise GonomalyError(f"--out {out}: conflicts with --resume {resume_dir} "
                                f"(a resumed training completes its own run folder)")
        names = ("model", "data", "epochs", "batch_size", "lr", "latent_dim", "threshold", "score", "seed",
                 "width", "error_map", "sigma", "top_k", "loss", "augment")
        given = {name: ctx.params[name] for name in names
                 if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
        _resume(ctx, resume_dir, given, data_dir, checkpoints, device, precision)
        return
    if out is None:
        raise click.UsageError("Missing option '--out' (or give --resume RUN_DIR).", ctx=ctx)
    from gonomaly.data import parse_spec

    options.update(device=device, precision=precision)
    checkpoints = None if world.distributed else checkpoints

    spec = parse_spec(data)
    if spec.kind == "mvtec" and "pooled" not in spec.options:
        from gonomaly.data.mvtec import category_folders

        folders = category_folders(spec.options["root"])
        if len(folders) > 1:  # one model per category, in OUT/<category>
            for folder in folders:
                _train(ctx, model, f"mvtec:{folder}", out / folder.name, epochs, batch_size, lr,
                       latent_dim, threshold, score, seed, data_dir, checkpoints=checkpoints, **options)
            return
    _train(ctx, model, data, out, epochs, batch_size, lr, latent_dim, threshold, score, seed,
           data_dir, checkpoints=checkpoints, **options)


def _evaluate_and_save(detector, bundle, out_dir: Path, json_path: Path | None,
                       report_dir: Path | None = None, run_dir: Path | None = None, seed: int = 0):
    from gonomaly.evaluation import evaluate
    from gonomaly.io import atomic_write_json
    from gonomaly.metrics import format_table
    from gonomaly.detector import SCORE_BATCH_SIZE
    from gonomaly.report.examples import save_examples

    # Under torchrun each rank scores its shard; rank 0 gets all scores in order and writes.
    images = bundle.test.images
    scores = distributed.sharded(lambda start, stop: detector.score_samples(images[start:stop]),
                                 len(images), SCORE_BATCH_SIZE)
    if scores is None:
        return None
    result = evaluate(detector, bundle, scores=scores)
    result.save(out_dir)
    save_examples(detector, bundle.test, result.scores, out_dir, seed=seed)
    if json_path is not None:
        atomic_write_json(json_path, result.metrics)
    click.echo(format_table(result.metrics))
    log.info("results written to %s", out_dir)
    if report_dir is not None:
        from gonomaly.report.html import build_report

        log.info("report written to %s", build_report(out_dir, report_dir, run_dir))
    return result


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", "data", required=True, help="Data SPEC of the labelled test set.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the metrics to this JSON file.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for metrics.json and scores.npz [default: RUN_DIR/eval-SPEC].")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the HTML report (index.html and PNG figures) to this folder.")
@seed_option
@data_dir_option
@device_option
@click.pass_context
def evaluate(ctx, run_dir, data, json_path, out, report_dir, seed, data_dir, device):
    """Score a labelled test set and print the metric table (sharded across torchrun's ranks)."""
    from gonomaly.data import load_data
    from gonomaly.detector import ReconstructionDetector

    with distributed.session(device):
        detector = ReconstructionDetector.load(run_dir).to(device)
        detector.progress = not ctx.obj["quiet"]
        bundle = load_data(data, data_dir, seed=seed, image_size=detector.image_shape_[1])
        _evaluate_and_save(detector, bundle, out or run_dir / f"eval-{_slug(data)}", json_path,
                           report_dir=report_dir, run_dir=run_dir, seed=seed)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="DataLoader workers decoding files [default: 2 for 1,000 files or more, else 0].")
@click.option("--max-pixels", type=click.IntRange(min=1), default=50_000_000, show_default=True,
              help="Refuse larger images, from their header, before decoding them.")
@click.option("--resize/--no-resize", default=None,
              help="Resize images to the model's size as training did [default: for models trained "
                   "on mvtec or folder data].")
@click.option("--overlays", "overlay_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write each image's anomaly-map overlay (PNG) to this folder.")
@seed_option
@device_option
@click.pass_context
def score(ctx, run_dir, paths, as_json, batch_size, workers, max_pixels, resize, overlay_dir, seed,
          device):
    """Score image files or folders of them: one line per image (path, score, label).

    Files stream in batches, decoded by worker processes, so memory stays flat for any number.
    Under torchrun each rank scores every N-th batch and rank 0 prints all, in input order."""
    from functools import partial

    from tqdm.auto import tqdm

    from gonomaly.data.images import collect_image_paths, read_image
    from gonomaly.data.streaming import stream_batches
    from gonomaly.detector import ReconstructionDetector

    with distributed.session(device) as world:
        detector = ReconstructionDetector.load(run_dir).to(device)
        files = collect_image_paths(list(paths))
        if workers is None:
            workers = 2 if len(files) >= 1000 else 0
        if resize is None:
            from gonomaly.detector import read_config

            data = read_config(run_dir).get("data")
            resize = isinstance(data, dict) and data.get("kind") in ("mvtec", "folder")
        if resize:
            from gonomaly.data.mvtec import read_resized

            read = partial(read_resized, image_shape=detector.image_shape_, max_pixels=max_pixels)
        else:
            read = partial(read_image, image_shape=detector.image_shape_, max_pixels=max_pixels)

        def lines_per_batch():
            mine = distributed.round_robin(files, batch_size, world)
            for chunk, images in stream_batches(mine, read, batch_size, workers):
                scores = detector.score_samples(images)
                if overlay_dir is not None:  # each rank writes the overlays of its own images
                    from gonomaly.report.overlays import write_overlays

                    write_overlays(detector, images, chunk, overlay_dir)
                lines = []
                for path, value in zip(chunk, scores):
                    label = int(value > detector.threshold_)
                    if as_json:
                        lines.append(json.dumps({"path": str(path), "score": float(value), "label": label}))
                    else:
                        lines.append(f"{path}\t{value:.6g}\t{'anomalous' if label else 'normal'}")
                yield lines

        show_bar = not ctx.obj["quiet"] and len(files) >= 1000
        with tqdm(total=len(files), unit="img", disable=not show_bar, desc="score") as bar:
            for lines in distributed.merge_rounds(lines_per_batch(), len(files), batch_size, world):
                if lines:  # empty on ranks other than 0
                    text = "\n".join(lines)
                    tqdm.write(text) if show_bar else click.echo(text)
                    bar.update(len(lines))


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/default"),
              show_default=True, help="Run folder to write.")
@click.option("--data", "data", default="mnist-c", show_default=True,
              help="Test SPEC: clean test digits against their corrupted versions.")
@_train_options("gon", 2, default_score="fused")
@click.pass_context
def run(ctx, model, data, out, epochs, batch_size, lr, latent_dim, threshold, score, seed, data_dir,
        device, precision, **options):
    """The main job: train on clean MNIST digits, evaluate clean against corrupted test digits."""
    with distributed.session(device):
        _run(ctx, model, data, out, epochs, batch_size, lr, latent_dim, threshold, score, seed,
             data_dir, device, precision, **options)


def _run(ctx, model, data, out, epochs, batch_size, lr, latent_dim, threshold, score, seed, data_dir,
         device, precision, **options):
    from gonomaly.data import load_data, parse_spec

    spec = parse_spec(data)
    if spec.kind != "mnist-c":
        raise GonomalyError(f"run: --data must be an mnist-c spec, got '{data}'")
    start = time.perf_counter()
    bundle = load_data(spec, data_dir, seed=seed)
    train_spec = "mnist" + (f":n_train={spec.options['n_train']}" if "n_train" in spec.options else "")
    detector, _ = _train(ctx, model, train_spec, out, epochs, batch_size, lr, latent_dim,
                         threshold, score, seed, data_dir, device=device, precision=precision, **options)
    _evaluate_and_save(detector, bundle, out / "eval", out / "eval" / "summary.json",
                       report_dir=out / "report", run_dir=out, seed=seed)
    log.info("run finished in %.0f s", time.perf_counter() - start)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--eval", "eval_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Evaluation folder [default: RUN_DIR/eval, or the only RUN_DIR/eval-*].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for index.html and its PNGs [default: RUN_DIR/report].")
@seed_option
def report(run_dir, eval_dir, out, seed):
    """Rebuild the HTML report from a run's saved files (no model is loaded)."""
    from gonomaly.report.html import build_report, find_eval_dir

    eval_dir = eval_dir or find_eval_dir(run_dir)
    out = out or (run_dir / "report" if eval_dir == run_dir / "eval" else eval_dir / "report")
    click.echo(str(build_report(eval_dir, out, run_dir)))


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write: OUT/<corruption>/test_images.npy and test_labels.npy.")
@click.option("--format", "fmt", type=click.Choice(["npy", "png"]), default="npy", show_default=True)
@click.option("--n", "n_test", type=click.IntRange(min=1), default=2000, show_default=True,
              help="The first N MNIST test digits.")
@click.option("--corruptions", default="all", show_default=True,
              help="Comma-separated names, 'all' (15) or 'seed' (the seed protocol's 14).")
@seed_option
@data_dir_option
def corrupt(out, fmt, n_test, corruptions, seed, data_dir):
    """Write MNIST-C (identity + corruptions of the test digits) in the published layout."""
    from gonomaly.data import corruptions as registry
    from gonomaly.data.mnist_c import export_mnist_c
    from gonomaly.data.sources import load_digits
    from gonomaly.report.plots import plot_image_strip

    names = {"all": list(registry.ALL_CORRUPTIONS), "seed": list(registry.SEED_CORRUPTIONS)}.get(
        corruptions, [n.strip() for n in corruptions.split(",") if n.strip()])
    unknown = [n for n in names if n not in registry.ALL_CORRUPTIONS]
    if unknown:
        raise GonomalyError(f"--corruptions: unknown {', '.join(unknown)} "
                            f"(known: {', '.join(registry.ALL_CORRUPTIONS)})")
    digits = load_digits("mnist", data_dir)
    images, labels = digits.test_images[:n_test], digits.test_labels[:n_test]
    generated = export_mnist_c(images, labels, names, out, seed, fmt,
                               progress=lambda name: log.info("wrote %s", out / name))
    shown = min(8, len(images))
    rows = list(generated)
    strip = np.stack([generated[name][i] for name in rows for i in range(shown)]) / 255.0
    captions = [name if i == 0 else "" for name in rows for i in range(shown)]
    grid = plot_image_strip(strip, out / "grid.png", captions=captions, nrow=len(rows),
                            title=f"MNIST-C as generated by gonomaly (seed {seed})")
    click.echo(f"wrote {len(rows)} x {len(images)} images to {out} ({fmt}); preview {grid}")


@cli.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file [default: RUN_DIR/model.onnx].")
@seed_option
def export_command(run_dir, fmt, out, seed):
    """Export the whole scorer (images -> scores, anomaly maps) as a feed-forward graph."""
    from gonomaly.detector import ReconstructionDetector
    from gonomaly.export import export_onnx

    detector = ReconstructionDetector.load(run_dir)
    path = export_onnx(detector, out or run_dir / "model.onnx")
    click.echo(f"wrote {path}: input 'images' (N, {', '.join(map(str, detector.image_shape_))}) "
               f"float32 in [0, 1]; outputs 'scores' (N,) and 'anomaly_maps' (N, H, W); "
               f"threshold {detector.threshold_:.6g}")


def _choices(text: str, known, what: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in known]
    if unknown or not values:
        raise GonomalyError(f"{what}: unknown {', '.join(unknown) or 'empty list'} "
                            f"(known: {', '.join(known)})")
    return values


def _variants(text: str | None) -> list[dict] | None:
    if text is None:
        return None
    variants = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        parts = item.split("/")
        try:
            error_map, sigma, score = parts
            variant = {"error_map": error_map, "sigma": float(sigma), "score": score}
        except ValueError:
            raise GonomalyError(f"--variants: '{item}' is not MAP/SIGMA/SCORE (e.g. ssim/4/topk)") from None
        if error_map not in ERROR_MAPS or score not in SCORES or not 0 <= variant["sigma"] <= 64:
            raise GonomalyError(f"--variants: '{item}': map in {', '.join(ERROR_MAPS)}, sigma in "
                                f"[0, 64], score in {', '.join(SCORES)}")
        variants.append(variant)
    return variants or None


def _options(options: list):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


@cli.group()
def benchmark():
    """End-to-end benchmarks on real data."""


@benchmark.command("mnist-c")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--models", default="gon,cae", show_default=True, help=f"Comma-separated: {', '.join(MODELS)}.")
@click.option("--scores", default="mse,fused", show_default=True, help="Comma-separated: mse, fused.")
@click.option("--data", "data", default="mnist-c", show_default=True,
              help="The protocol's SPEC (the seed's 14 corruptions, 2,000 test digits).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@seed_option
@data_dir_option
@click.pass_context
def benchmark_mnist_c(ctx, epochs, batch_size, models, scores, data, json_path, seed, data_dir):
    """The seed's MNIST-C protocol for each model and score: per corruption n, flagged, AUROC;
    pooled confusion, AUROC, AUPR; times."""
    from gonomaly.bench import mnist_c_benchmark
    from gonomaly.io import atomic_write_json

    model_list = _choices(models, MODELS, "--models")
    score_list = _choices(scores, ("mse", "fused"), "--scores")
    results = mnist_c_benchmark(model_list, score_list, epochs, batch_size, seed, data, data_dir,
                                _make_detector, progress=not ctx.obj["quiet"])
    if json_path is not None:
        atomic_write_json(json_path, results)
    log.info("benchmark finished in %.0f s", results["seconds"])


@benchmark.command("models")
@click.option("--models", default=",".join(MODELS), show_default=True, help="Comma-separated.")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--scores", default="mse", show_default=True,
              help="Comma-separated: mse, fused (MNIST-C; the first one also for one-class).")
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="MNIST-C training digits [default: all 60,000].")
@click.option("--n-test", type=click.IntRange(min=1), default=2000, show_default=True,
              help="MNIST-C test digits per corruption.")
@click.option("--one-class-n-train", type=click.IntRange(min=1), default=None,
              help="One-class: training images of the normal digit [default: all, ~6,000].")
@click.option("--one-class-n-test", type=click.IntRange(min=1), default=10000, show_default=True,
              help="One-class: the first N test digits.")
@click.option("--digits", default="0,1,2,3,4,5,6,7,8,9", show_default=True,
              help="One-class: the normal digits to run ('' for none).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@seed_option
@data_dir_option
@click.pass_context
def benchmark_models(ctx, models, epochs, batch_size, scores, n_train, n_test, one_class_n_train,
                     one_class_n_test, digits, json_path, seed, data_dir):
    """Every model side by side: parameters, training time per epoch, reconstruction MSE of
    clean test digits, MNIST-C AUROC and one-class MNIST AUROC per digit."""
    from gonomaly.bench import models_benchmark
    from gonomaly.io import atomic_write_json

    model_list = _choices(models, MODELS, "--models")
    score_list = _choices(scores, ("mse", "fused"), "--scores")
    try:
        digit_list = sorted({int(d) for d in digits.split(",") if d.strip()})
    except ValueError:
        raise GonomalyError(f"--digits {digits}: digits such as 0,1,2") from None
    if not all(0 <= d <= 9 for d in digit_list):
        raise GonomalyError(f"--digits {digits}: digits lie in 0-9")
    results = models_benchmark(model_list, score_list, epochs, batch_size, seed, n_train, n_test,
                               one_class_n_train, one_class_n_test, digit_list, data_dir,
                               _make_detector, progress=not ctx.obj["quiet"])
    if json_path is not None:
        atomic_write_json(json_path, results)
    log.info("benchmark finished in %.0f s", results["seconds"])


@benchmark.command("mvtec")
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
              help="MVTec AD root (category folders) or one category folder.")
@click.option("--categories", default=None, help="Comma-separated categories [default: all found].")
@click.option("--models", default="gon,cae", show_default=True, help="Comma-separated: gon, cae.")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--latent-dim", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--score", type=click.Choice(list(SCORES)), default="mse", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results here, and a figure per category and model beside it.")
@click.option("--variants", default=None,
              help="Score each trained network several ways: comma-separated MAP/SIGMA/SCORE, e.g. "
                   "l2/0/mse,ssim/4/topk [default: --error-map/--sigma/--score].")
@_options(image_options)
@seed_option
@click.pass_context
def benchmark_mvtec(ctx, root, categories, models, epochs, batch_size, latent_dim, score, json_path,
                    variants, seed, image_size, **options):
    """One model per MVTec AD category: image AUROC, pixel AUROC, AUPRO, the confusion at the
    threshold and the training time per category and model."""
    from gonomaly.bench import mvtec_benchmark
    from gonomaly.io import atomic_write_json

    from gonomaly.detector import DETECTORS

    model_list = _choices(models, DETECTORS, "--models")
    results = mvtec_benchmark(root, [c.strip() for c in categories.split(",")] if categories else None,
                              image_size or 64, model_list, epochs, batch_size, seed, _make_detector,
                              progress=not ctx.obj["quiet"],
                              figures=json_path.parent if json_path is not None else None,
                              latent_dim=latent_dim, score=score, variants=_variants(variants),
                              **options)
    if json_path is not None:
        atomic_write_json(json_path, results)
    log.info("benchmark finished in %.0f s", results["seconds"])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        cli.main(args=args, prog_name="gonomaly", standalone_mode=False)
    except TrainingInterrupted as exc:
        click.echo(f"gonomaly: {exc}", err=True)
        sys.exit(exc.exit_code)
    except GonomalyError as exc:
        if "--debug" in args:
            raise
        click.echo(f"gonomaly: error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("gonomaly: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
