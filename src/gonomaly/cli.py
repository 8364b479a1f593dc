"""The ``gonomaly`` command line: parse the options into a workflow config, run it, print.

Every command's work lives in ``gonomaly.workflow`` (and ``gonomaly.bench`` for the benchmarks)."""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path

import click

from gonomaly import __version__, distributed, workflow
from gonomaly.detector import DETECTORS
from gonomaly.errors import GonomalyError, TrainingInterrupted
from gonomaly.image_scoring import DEFAULT_SERVE_MAX_PIXELS  # the --max-pixels default of serve
from gonomaly.scores import ERROR_MAPS, SCORERS, score_names  # the --score and --error-map names
from gonomaly.trainer import LOSSES  # the --loss names
from gonomaly.workflow.file_scoring import ON_ERROR  # the --on-error names

MODEL_NAMES = list(DETECTORS)  # the --model names
log = logging.getLogger("gonomaly")


def options(*decorators):
    """Apply click option decorators in the order given (the first is listed first in --help)."""
    def decorate(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return decorate


seed_option = click.option("--seed", type=int, default=0, show_default=True,
                           help="Seed for every random source; the same seed gives the same result.")
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                               default=None, help="Folder with the dataset's files (first in the search order).")
device_option = click.option("--device", type=click.Choice(distributed.DEVICES), default="auto",
                             show_default=True,
                             help="cuda: this process's GPU (LOCAL_RANK under torchrun); auto: cuda when available.")
json_option = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)


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


def _progress() -> bool:
    return not click.get_current_context().obj["quiet"]


# Image size, model width, anomaly maps, training loss and augmentation.
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


PER_KIND = "[default: per data kind, see the README's defaults table]"
# The training length and calibration options that `train`, `run` and `benchmark mvtec` share.
length_options = [
    click.option("--epochs", type=click.IntRange(min=1), default=None,
                 help=f"Passes over the training images (--steps, when given, wins). {PER_KIND}"),
    click.option("--steps", type=click.IntRange(min=1), default=None,
                 help=f"Optimizer steps to train for; decides the length over --epochs. {PER_KIND}"),
    click.option("--batch-size", type=click.IntRange(min=1), default=None, help=PER_KIND),
    click.option("--val-fraction", type=click.FloatRange(0, 0.5), default=None,
                 help="Training images held out (at least 20 where the data allows) to calibrate "
                      f"the threshold and scores on and to stop early; 0: none (in-sample). {PER_KIND}"),
    click.option("--patience", type=click.IntRange(min=1), default=None,
                 help=f"Stop after this many validation evaluations without improvement. {PER_KIND}"),
    click.option("--eval-every", type=click.IntRange(min=1), default=None,
                 help="Steps between validation evaluations [default: once per epoch, or per data kind]."),
]


def _train_options():
    """The detector's options (every ``workflow.DetectorConfig`` field), the data folder and
    the image size, as ``train`` and ``run`` take them."""
    return options(
        click.option("--model", type=click.Choice(MODEL_NAMES), default="gon", show_default=True,
                     help="Detector model."),
        *length_options,
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Adam's learning rate [default: 1e-3; implicit-gon 1e-4]."),
        click.option("--latent-dim", type=click.IntRange(min=1), default=None,
                     help="Latent size [default: 100; implicit-gon 32]."),
        click.option("--threshold", default=None,
                     help="fpr:A (flags a new normal image with probability at most A) | mean-std:K "
                          f"| quantile:Q | value:X, from the validation images' scores. {PER_KIND}"),
        click.option("--score", type=click.Choice(score_names()), default=None,
                     help="mse: mean reconstruction error; fused: density of error, SSIM and "
                          "latent features among the normal validation images; max: maximum "
                          "of the smoothed anomaly map; topk: mean of its top-k pixels; auto: "
                          "map, sigma, score and k chosen against synthetic anomalies of the "
                          f"validation images. {PER_KIND}"),
        *image_options, seed_option, data_dir_option, device_option,
        click.option("--precision", type=click.Choice(distributed.PRECISIONS), default="fp32",
                     show_default=True,
                     help="bf16: mixed-precision training on CUDA (the gradient-origin step "
                          "and the losses stay float32)."),
    )


# The options `train --resume` checks against the checkpoint when they are given explicitly.
RESUME_CHECKED = ("model", "data", "epochs", "batch_size", "lr", "latent_dim", "threshold", "score", "seed",
                  "width", "error_map", "sigma", "top_k", "loss", "augment", "steps", "val_fraction",
                  "patience", "eval_every")


@cli.command()
@click.option("--data", "data", default="mnist", show_default=True, help="Data SPEC of the normal training images.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder to write (required unless --resume).")
@_train_options()
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Continue the interrupted training in this run folder, with the options saved in "
                   "its checkpoint (conflicting options are refused).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None,
              help="Also write a resumable checkpoint every N optimizer steps.")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also write a resumable checkpoint every M minutes.")
@click.pass_context
def train(ctx, data, out, data_dir, image_size, resume_dir, checkpoint_every, checkpoint_minutes, **settings):
    """Train a detector on normal images and save it to a run folder.

    Ctrl-C or SIGTERM finishes the current step, writes a checkpoint to RUN_DIR/resume and exits
    (130 or 143); `gonomaly train --resume RUN_DIR` continues it exactly.

    Under torchrun (--nproc_per_node=N, --nnodes ...) it trains with DistributedDataParallel:
    --batch-size is per process, the global batch is N times that."""
    from click.core import ParameterSource

    # Before the option checks below, as the workflow would refuse them anyway under torchrun.
    workflow.refuse_under_torchrun(bool(resume_dir or checkpoint_every or checkpoint_minutes))
    if resume_dir is not None:
        if out is not None and out.resolve() != resume_dir.resolve():
            raise GonomalyError(f"--out {out}: conflicts with --resume {resume_dir} "
                                f"(a resumed training completes its own run folder)")
        expected = {name: ctx.params[name] for name in RESUME_CHECKED
                    if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
        workflow.resume(workflow.ResumeConfig(
            resume_dir, expected, data_dir=data_dir, checkpoint_every=checkpoint_every,
            checkpoint_minutes=checkpoint_minutes, device=settings["device"], precision=settings["precision"],
            progress=_progress()))
        return
    if out is None:
        raise click.UsageError("Missing option '--out' (or give --resume RUN_DIR).", ctx=ctx)
    workflow.train(workflow.TrainConfig(
        out, data, workflow.DetectorConfig(**settings), data_dir=data_dir, image_size=image_size,
        checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes, progress=_progress()))


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
def evaluate(run_dir, data, json_path, out, report_dir, seed, data_dir, device):
    """Score a labelled test set and print the metric table (sharded across torchrun's ranks)."""
    config = workflow.EvaluateConfig(run_dir, data, out=out, json_path=json_path, report_dir=report_dir, seed=seed,
                                     data_dir=data_dir, device=device, progress=_progress())
    workflow.evaluate(config, echo=click.echo)


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
@click.option("--on-error", type=click.Choice(ON_ERROR), default=None,
              help="skip: report each unreadable file on its own line (stderr; with --json, stdout), score "
                   "the others, print a summary, exit 1; fail: stop at the first one [default: skip; fail "
                   "for a single file].")
@seed_option
@device_option
def score(run_dir, paths, as_json, batch_size, workers, max_pixels, resize, overlay_dir, on_error, seed, device):
    """Score image files or folders of them: one line per image (path, score, label).

    Files stream in batches, decoded by worker processes, so memory stays flat for any number.
    Under torchrun each rank scores every N-th batch and rank 0 prints all, in input order."""
    config = workflow.ScoreConfig(run_dir, paths, as_json=as_json, batch_size=batch_size, workers=workers,
                                  max_pixels=max_pixels, resize=resize, overlay_dir=overlay_dir, device=device,
                                  progress=_progress(), on_error=on_error)
    summary = workflow.score(config, echo=click.echo, echo_error=partial(click.echo, err=True))
    if config.error_policy() == "skip" and distributed.env_world().main:
        click.echo(f"gonomaly: {summary.line()}", err=True)
    if summary.failed:
        sys.exit(1)  # after every line: each bad file was reported above


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most images scored in one batch (1, with --max-wait-ms 0: no batching).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Longest wait for a batch to fill.")
@click.option("--token", envvar="GONOMALY_SERVE_TOKEN", show_envvar=True, default=None,
              help="Require 'Authorization: Bearer TOKEN' on every endpoint but /healthz.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes, each with the model and its own batcher.")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Refuse larger request bodies (413).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_SERVE_MAX_PIXELS, show_default=True,
              help="Refuse larger images, from their header, before decoding them (422).")
@seed_option
def serve(run_dir, host, port, max_batch, max_wait_ms, token, workers, max_body_mb, max_pixels, seed):
    """Serve a run folder over HTTP: POST /v1/score, GET /v1/model, /healthz, /metrics, and a web page at /.

    The run folder is loaded and verified once; requests that arrive together are scored in one
    batch. SIGTERM or Ctrl-C finish the requests in flight, then exit. Scoring draws no random
    number: --seed changes nothing."""
    from gonomaly.serve import serve as serve_run

    serve_run(run_dir, host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms, token=token,
              workers=workers, max_body_mb=max_body_mb, max_pixels=max_pixels,
              log_level="warning" if click.get_current_context().obj["quiet"] else "info")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/default"),
              show_default=True, help="Run folder to write.")
@click.option("--data", "data", default="mnist-c", show_default=True,
              help="Test SPEC: clean test digits against their corrupted versions.")
@_train_options()
def run(out, data, data_dir, image_size, **settings):
    """The main job: train on clean MNIST digits, evaluate clean against corrupted test digits."""
    config = workflow.RunConfig(out, data, workflow.DetectorConfig(**settings), data_dir=data_dir,
                                image_size=image_size, progress=_progress())
    workflow.run(config, echo=click.echo)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--eval", "eval_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Evaluation folder [default: RUN_DIR/eval, or the only RUN_DIR/eval-*].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for index.html and its PNGs [default: RUN_DIR/report].")
@seed_option
def report(run_dir, eval_dir, out, seed):
    """Rebuild the HTML report from a run's saved files (no model is loaded)."""
    click.echo(str(workflow.report(workflow.ReportConfig(run_dir, eval_dir, out))))


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write: OUT/<corruption>/test_images.npy and test_labels.npy.")
@click.option("--format", "fmt", type=click.Choice(["npy", "png"]), default="npy", show_default=True)
@click.option("--n", "n_test", type=click.IntRange(min=1), default=2000, show_default=True,
              help="The first N MNIST test digits.")
@click.option("--corruptions", default="all", show_default=True,
              help="Comma-separated names, 'all' (15) or 'protocol' (the MNIST-C protocol's 14).")
@seed_option
@data_dir_option
def corrupt(out, fmt, n_test, corruptions, seed, data_dir):
    """Write MNIST-C (identity + corruptions of the test digits) in the published layout."""
    done = workflow.corrupt(workflow.CorruptConfig(out, fmt, n_test, corruptions, seed, data_dir))
    click.echo(f"wrote {len(done.names)} x {done.n_images} images to {out} ({fmt}); preview {done.grid}")


@cli.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file [default: RUN_DIR/model.onnx].")
@seed_option
def export_command(run_dir, fmt, out, seed):
    """Export the whole scorer (images -> scores, anomaly maps) as a feed-forward graph."""
    path, detector = workflow.export(workflow.ExportConfig(run_dir, fmt, out))
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


def _digits(text: str) -> list[int]:
    try:
        digits = sorted({int(d) for d in text.split(",") if d.strip()})
    except ValueError:
        raise GonomalyError(f"--digits {text}: digits such as 0,1,2") from None
    if not all(0 <= d <= 9 for d in digits):
        raise GonomalyError(f"--digits {text}: digits lie in 0-9")
    return digits


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
        if error_map not in ERROR_MAPS or score not in SCORERS or not 0 <= variant["sigma"] <= 64:
            raise GonomalyError(f"--variants: '{item}': map in {', '.join(ERROR_MAPS)}, sigma in "
                                f"[0, 64], score in {', '.join(SCORERS)}")
        variants.append(variant)
    return variants or None


@cli.group()
def benchmark():
    """End-to-end benchmarks on real data."""


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise GonomalyError(f"--seeds {text}: integers such as 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise GonomalyError(f"--seeds {text}: one or more different integers such as 0,1,2")
    return seeds


seeds_option = click.option("--seeds", default=None,
                            help="Comma-separated seeds: run the whole benchmark once per seed and "
                                 "report mean +- std [default: --seed].")
epochs_batch_options = [
    click.option("--epochs", type=click.IntRange(min=1), default=None, help=PER_KIND),
    click.option("--batch-size", type=click.IntRange(min=1), default=None, help=PER_KIND),
]


@benchmark.command("mnist-c")
@options(*epochs_batch_options)
@click.option("--models", default="gon,cae", show_default=True, help=f"Comma-separated: {', '.join(MODEL_NAMES)}.")
@click.option("--scores", default="mse,fused", show_default=True, help="Comma-separated: mse, fused.")
@click.option("--data", "data", default="mnist-c", show_default=True,
              help="The protocol's SPEC (the MNIST-C protocol's 14 corruptions, 2,000 test digits).")
@options(json_option, seed_option, seeds_option, data_dir_option)
def benchmark_mnist_c(epochs, batch_size, models, scores, data, json_path, seed, seeds, data_dir):
    """The MNIST-C protocol for each model and score: per corruption n, flagged, AUROC;
    pooled confusion, AUROC, AUPR; times."""
    from gonomaly.bench import MnistCBenchmarkConfig, mnist_c_benchmark

    config = MnistCBenchmarkConfig(
        models=_choices(models, MODEL_NAMES, "--models"), scores=_choices(scores, ("mse", "fused"), "--scores"),
        detector=workflow.DetectorConfig(epochs=epochs, batch_size=batch_size, seed=seed), data=data,
        data_dir=data_dir, json_path=json_path, progress=_progress(), seeds=_seeds(seeds))
    mnist_c_benchmark(config, echo=click.echo)


@benchmark.command("models")
@click.option("--models", default=",".join(MODEL_NAMES), show_default=True, help="Comma-separated.")
@options(*epochs_batch_options)
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
@options(json_option, seed_option, seeds_option, data_dir_option)
def benchmark_models(models, epochs, batch_size, scores, n_train, n_test, one_class_n_train,
                     one_class_n_test, digits, json_path, seed, seeds, data_dir):
    """Every model side by side: parameters, training time per epoch, reconstruction MSE of
    clean test digits, MNIST-C AUROC and one-class MNIST AUROC per digit."""
    from gonomaly.bench import ModelsBenchmarkConfig, models_benchmark

    config = ModelsBenchmarkConfig(
        models=_choices(models, MODEL_NAMES, "--models"), scores=_choices(scores, ("mse", "fused"), "--scores"),
        n_train=n_train, n_test=n_test, one_class_n_train=one_class_n_train,
        one_class_n_test=one_class_n_test, digits=_digits(digits),
        detector=workflow.DetectorConfig(epochs=epochs, batch_size=batch_size, seed=seed),
        data_dir=data_dir, json_path=json_path, progress=_progress(), seeds=_seeds(seeds))
    models_benchmark(config, echo=click.echo)


@benchmark.command("mvtec")
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
              help="MVTec AD root (category folders) or one category folder.")
@click.option("--categories", default=None, help="Comma-separated categories [default: all found].")
@click.option("--models", default="gon,cae", show_default=True, help="Comma-separated: gon, cae.")
@options(*length_options)
@click.option("--latent-dim", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--threshold", default=None, help=f"As `train --threshold`. {PER_KIND}")
@click.option("--score", type=click.Choice(score_names()), default=None, help=PER_KIND)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results here, and a figure per category and model beside it.")
@click.option("--variants", default=None,
              help="Score each trained network several ways: comma-separated MAP/SIGMA/SCORE, e.g. "
                   "l2/0/mse,ssim/4/topk [default: --error-map/--sigma/--score].")
@options(*image_options, seed_option, seeds_option)
def benchmark_mvtec(root, categories, models, json_path, variants, image_size, seeds, **settings):
    """One model per MVTec AD category: image AUROC, pixel AUROC, AUPRO, the confusion at the
    threshold and the training time per category and model."""
    from gonomaly.bench import MvtecBenchmarkConfig, mvtec_benchmark

    config = MvtecBenchmarkConfig(
        root=root, categories=[c.strip() for c in categories.split(",")] if categories else None,
        image_size=image_size or 64, models=_choices(models, MODEL_NAMES, "--models"),
        detector=workflow.DetectorConfig(**settings), variants=_variants(variants),
        figures=json_path.parent if json_path is not None else None, json_path=json_path,
        progress=_progress(), seeds=_seeds(seeds))
    mvtec_benchmark(config, echo=click.echo)


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
