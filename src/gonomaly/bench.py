"""``gonomaly benchmark mnist-c``, ``benchmark models`` and ``benchmark mvtec`` as library functions.

Each takes one config object and returns the results the ``--json`` file holds:

    from gonomaly.bench import MnistCBenchmarkConfig, mnist_c_benchmark
    results = mnist_c_benchmark(MnistCBenchmarkConfig(models=("gon",), scores=("mse", "fused")))

MNIST-C: train on the clean MNIST training digits; test the first 2,000 test digits, clean, against
the same digits under each of the MNIST-C protocol's 14 corruptions; the threshold (by default
fpr:0.05) is calibrated on held-out training digits. Each model is scored by its plain
reconstruction error and by the fused score, from one trained network. MVTec AD: one model per
category, image and pixel metrics.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gonomaly.data import load_data
from gonomaly.detector import DETECTORS
from gonomaly.errors import GonomalyError
from gonomaly.evaluation import evaluate
from gonomaly.scores import SCORING_PARAMS
from gonomaly.workflow.config import DetectorConfig, Echo, make_detector, resolve_augment, resolve_defaults

log = logging.getLogger("gonomaly")


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    """What every benchmark shares. ``detector`` holds the epochs, batch size, seed and the other
    hyper-parameters of every model trained (its ``model`` is replaced by each of ``models``;
    unset ones are the defaults for the benchmark's ``data_kind``, as ``train`` has them);
    ``json_path``: also write the results there."""

    models: Sequence[str] = ("gon", "cae")
    detector: DetectorConfig = DetectorConfig()
    data_dir: Path | None = None
    json_path: Path | None = None
    progress: bool = False
    data_kind: str = "mnist"

    @property
    def settings(self) -> DetectorConfig:
        """The detector settings in use: ``detector`` with the data kind's defaults filled in."""
        return resolve_defaults(self.detector, self.data_kind)

    def detector_of(self, model: str, **changes) -> object:
        """A new detector of ``model`` with this benchmark's hyper-parameters and ``changes``."""
        return make_detector(replace(self.settings, model=model, **changes), progress=self.progress)


@dataclass(frozen=True, kw_only=True)
class MnistCBenchmarkConfig(BenchmarkConfig):
    """The MNIST-C protocol for each model and score; ``data``: its SPEC."""

    scores: Sequence[str] = ("mse", "fused")
    data: str = "mnist-c"


@dataclass(frozen=True, kw_only=True)
class ModelsBenchmarkConfig(BenchmarkConfig):
    """Every model side by side on MNIST-C (``n_train`` None: all 60,000 training digits) and on
    one-class MNIST for each of ``digits``; ``scores[0]`` is also the one-class score."""

    models: Sequence[str] = tuple(DETECTORS)
    scores: Sequence[str] = ("mse",)
    n_train: int | None = None
    n_test: int = 2000
    one_class_n_train: int | None = None
    one_class_n_test: int = 10000
    digits: Sequence[int] = tuple(range(10))


@dataclass(frozen=True, kw_only=True)
class MvtecBenchmarkConfig(BenchmarkConfig):
    """One model per MVTec AD category under ``root`` (``categories`` None: all found).

    ``detector.augment="auto"`` takes each category's allowed flips and rotations. ``variants``
    (mappings of ``error_map``, ``sigma``, ``score``) score one trained network several ways, one
    row each, with the scoring and threshold refitted on the validation images. ``figures``: a folder for a
    figure per category, model and variant."""

    root: Path
    categories: Sequence[str] | None = None
    image_size: int = 64
    data_kind: str = "mvtec"
    variants: Sequence[Mapping] | None = None
    figures: Path | None = None


def finish(results: dict, config: BenchmarkConfig, start: float) -> dict:
    """Record the total time and write the JSON file the config asks for."""
    from gonomaly.io import atomic_write_json

    results["seconds"] = round(time.perf_counter() - start, 1)
    if config.json_path is not None:
        atomic_write_json(config.json_path, results)
    log.info("benchmark finished in %.0f s", results["seconds"])
    return results


def mnist_c_benchmark(config: MnistCBenchmarkConfig, echo: Echo = print) -> dict:
    """Per model and score: per corruption n, flagged, AUROC; pooled confusion, AUROC, AUPR; times.
    ``echo`` gets each run's table as it finishes."""
    start = time.perf_counter()
    settings = config.settings
    data = load_data(config.data, config.data_dir, seed=settings.seed)
    results = {"protocol": {"spec": config.data, "source": data.source, "n_train": len(data.train),
                            "n_test": len(data.test), "epochs": settings.epochs, "steps": settings.steps,
                            "batch_size": settings.batch_size, "seed": settings.seed,
                            "threshold": settings.threshold, "val_fraction": settings.val_fraction},
               "runs": []}
    for model in config.models:
        detector = config.detector_of(model)
        t0 = time.perf_counter()
        detector.fit(data.train)
        results["runs"] += score_variants(detector, data, model, config.scores, time.perf_counter() - t0,
                                          echo)
    return finish(results, config, start)


def score_variants(detector, data, model: str, scores: Sequence[str], train_seconds: float,
                   echo: Echo | None = print) -> list[dict]:
    """Evaluate one trained network under each score (refitting only the scoring, on the
    validation images that ``fit`` calibrated on)."""
    runs = []
    for score in scores:
        variant = copy.copy(detector)
        variant.score = score
        t1 = time.perf_counter()
        variant.fit_scoring()
        metrics = evaluate(variant, data, model_name=model).metrics
        metrics.update(score=score, train_seconds=round(train_seconds, 1),
                       score_seconds=round(time.perf_counter() - t1, 1))
        runs.append(metrics)
        if echo is not None:
            echo(format_run(metrics))
    return runs


def format_run(metrics: dict) -> str:
    c = metrics["confusion"]
    lines = [f"\n== {metrics['model']} / score {metrics['score']}: trained in "
             f"{metrics['train_seconds']:.0f} s, scored in {metrics['score_seconds']:.0f} s",
             f"{'corruption':<16}{'n':>6}{'flagged':>9}{'AUROC':>8}"]
    for name, entry in metrics["groups"].items():
        auroc = "-" if entry["auroc"] is None else f"{entry['auroc']:.3f}"
        lines.append(f"{name:<16}{entry['n']:>6}{entry['flagged']:>9}{auroc:>8}")
    lines.append(f"pooled: clean passed {c['tn']}/{c['tn'] + c['fp']}, corrupted flagged "
                 f"{c['tp']}/{c['tp'] + c['fn']}, AUROC {metrics['image_auroc']:.4f}, "
                 f"AUPR {metrics['image_aupr']:.4f}")
    return "\n".join(lines)


def models_benchmark(config: ModelsBenchmarkConfig, echo: Echo = print) -> dict:
    """``gonomaly benchmark models``: every model on the MNIST-C protocol (parameters, training
    seconds per epoch, reconstruction MSE of the clean test digits, AUROC per score) and on
    one-class MNIST (train on one digit's training images, the other nine digits of the test
    set are the anomalies; AUROC of the score ``scores[0]`` per digit and on average).
    ``echo`` gets the comparison as Markdown tables at the end."""
    start = time.perf_counter()
    settings = config.settings
    spec = f"mnist-c:n_test={config.n_test}" + (f",n_train={config.n_train}" if config.n_train else "")
    data = load_data(spec, config.data_dir, seed=settings.seed)
    results = {"protocol": {"mnist_c": spec, "source": data.source, "n_train": len(data.train),
                            "n_test": len(data.test), "epochs": settings.epochs,
                            "batch_size": settings.batch_size, "seed": settings.seed,
                            "scores": list(config.scores), "one_class_n_train": config.one_class_n_train,
                            "one_class_n_test": config.one_class_n_test, "digits": list(config.digits)},
               "models": {}}
    for model in config.models:
        results["models"][model] = row = _mnist_c_row(config, model, data)
        log.info("%s: %s", model, {k: v for k, v in row.items() if k != "one_class_auroc"})
        for digit in config.digits:
            row["one_class_auroc"][digit] = _one_class_auroc(config, model, digit)
        if config.digits:
            row["one_class_mean"] = float(sum(row["one_class_auroc"].values()) / len(config.digits))
        log.info("%s: one-class AUROC %s", model, row["one_class_auroc"])
    echo(format_models(results))
    return finish(results, config, start)


def _mnist_c_row(config: ModelsBenchmarkConfig, model: str, data) -> dict:
    """One model's MNIST-C columns: size, training speed, clean reconstruction error, AUROC per score."""
    clean = data.test.images[data.test.labels == 0]
    detector = config.detector_of(model)
    t0 = time.perf_counter()
    detector.fit(data.train)
    train_seconds = time.perf_counter() - t0
    runs = score_variants(detector, data, model, config.scores, train_seconds, echo=None)
    return {"parameters": sum(p.numel() for p in detector.model_.parameters()),
            "seconds_per_epoch": round(train_seconds / epochs_trained(detector.training_stats_), 1),
            "clean_mse": float(((detector.reconstruct(clean) - clean) ** 2).mean()),
            "mnist_c_auroc": {r["score"]: r["image_auroc"] for r in runs}, "one_class_auroc": {}}


def epochs_trained(stats: dict) -> float:
    """Passes over the training images that a fit's ``training_stats_`` made (fractional)."""
    return stats["steps"] / -(-stats["n_train"] // stats["global_batch_size"])


def _one_class_auroc(config: ModelsBenchmarkConfig, model: str, digit: int) -> float | None:
    """Train on one digit's training images; the other nine digits of the test set are anomalies."""
    one_class = load_data(f"mnist:classes={digit},n_test={config.one_class_n_test}" +
                          (f",n_train={config.one_class_n_train}" if config.one_class_n_train else ""),
                          config.data_dir, seed=config.detector.seed)
    detector = config.detector_of(model, score=config.scores[0])
    detector.fit(one_class.train)
    return evaluate(detector, one_class).metrics["image_auroc"]


def format_models(results: dict) -> str:
    """The comparison as Markdown tables (the README shows them)."""
    p, scores = results["protocol"], results["protocol"]["scores"]
    lines = ["| model | parameters | training s / epoch | clean test MSE | "
             + " | ".join(f"MNIST-C AUROC ({s})" for s in scores) + f" | one-class AUROC ({scores[0]}, mean) |",
             "| --- " * (5 + len(scores)) + "|"]
    for model, row in results["models"].items():
        mean = row.get("one_class_mean")
        lines.append(f"| {model} | {row['parameters']:,} | {row['seconds_per_epoch']:.1f} | "
                     f"{row['clean_mse']:.4f} | " + " | ".join(f"{row['mnist_c_auroc'][s]:.4f}" for s in scores)
                     + f" | {'-' if mean is None else f'{mean:.4f}'} |")
    if p["digits"]:
        lines += ["", "| model | " + " | ".join(str(d) for d in p["digits"]) + " | mean |",
                  "| --- " * (len(p["digits"]) + 2) + "|"]
        for model, row in results["models"].items():
            lines.append(f"| {model} | " + " | ".join(f"{row['one_class_auroc'][d]:.3f}" for d in p["digits"])
                         + f" | {row['one_class_mean']:.3f} |")
    return "\n".join(lines)


def _category_folders(config: MvtecBenchmarkConfig) -> list[Path]:
    from gonomaly.data.mvtec import category_folders

    folders = category_folders(config.root)
    if config.categories:
        missing = [c for c in config.categories if c not in {f.name for f in folders}]
        if missing:
            raise GonomalyError(f"{config.root}: no category {', '.join(missing)} (found: "
                                f"{', '.join(f.name for f in folders)})")
        folders = [f for f in folders if f.name in config.categories]
    return folders


def mvtec_benchmark(config: MvtecBenchmarkConfig, echo: Echo = print) -> dict:
    """One model per category and model kind: train on train/good, score the test set; image
    AUROC, pixel AUROC, AUPRO, the confusion at the threshold and the training time per row.
    ``echo`` gets each row as it finishes (the first with a header)."""
    from gonomaly.data.mvtec import load_category

    start = time.perf_counter()
    folders = _category_folders(config)
    d = config.settings
    results = {"protocol": {"root": str(config.root), "image_size": config.image_size, "epochs": d.epochs,
                            "steps": d.steps, "patience": d.patience, "val_fraction": d.val_fraction,
                            "batch_size": d.batch_size, "seed": d.seed, "threshold": d.threshold,
                            "augment": d.augment, "latent_dim": d.latent_dim, "score": d.score,
                            "width": d.width, "error_map": d.error_map, "sigma": d.sigma, "top_k": d.top_k,
                            "loss": d.loss},
               "runs": []}
    for folder in folders:
        bundle = load_category(folder, config.image_size)
        for model in config.models:
            chosen = resolve_augment(d.augment, bundle)
            detector = config.detector_of(model, augment=chosen)
            t0 = time.perf_counter()
            detector.fit(bundle.train)
            train_seconds = time.perf_counter() - t0
            row = {"category": folder.name, "train_seconds": round(train_seconds, 1), "augment": chosen,
                   "n_train": len(bundle.train)}
            for variant in config.variants or [{}]:
                metrics = _mvtec_variant(config, bundle, variant, detector=detector, model=model, row=row)
                results["runs"].append(metrics)
                echo(format_mvtec_row(metrics, header=len(results["runs"]) == 1))
    return finish(results, config, start)


def _mvtec_variant(config: MvtecBenchmarkConfig, bundle, variant: Mapping, *, detector, model: str,
                   row: dict) -> dict:
    """Metrics of ``detector`` scored as ``variant`` says, with the ``row`` fields of its training
    (and its figure, when the config asks for figures)."""
    scored = copy.copy(detector)
    if variant:
        for key, value in variant.items():
            setattr(scored, key, value)
        scored.fit_scoring()
    metrics = evaluate(scored, bundle, model_name=model).metrics
    chosen = {k: scored.effective(k) for k in SCORING_PARAMS}
    metrics.update(**row, **chosen)
    if config.figures is not None:
        name = f"mvtec_{row['category']}_{model}_{chosen['error_map']}_s{chosen['sigma']:g}_{chosen['score']}.png"
        metrics["figure"] = str(_mvtec_figure(scored, bundle, config.figures / name))
    return metrics


def format_mvtec_row(m: dict, header: bool = False) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    c = m["confusion"]
    row = (f"{m['category']:<12}{m['model']:<6}{m['error_map'] + '/' + format(m['sigma'], 'g') + '/' + m['score']:<15}"
           f"{fmt(m['image_auroc']):>8}{fmt(m.get('pixel_auroc')):>8}"
           f"{fmt(m.get('aupro')):>8}{c['tn']:>5}{c['fp']:>5}{c['fn']:>5}{c['tp']:>5}{m['train_seconds']:>9.1f}")
    head = (f"{'category':<12}{'model':<6}{'map/sigma/score':<15}{'img AUC':>8}{'pix AUC':>8}{'AUPRO':>8}"
            f"{'tn':>5}{'fp':>5}{'fn':>5}{'tp':>5}{'train s':>9}")
    return f"{head}\n{row}" if header else row


def _mvtec_figure(detector, bundle, path: Path, per_group: int = 2) -> Path:
    """Test images, their anomaly maps and ground-truth masks: ``per_group`` of each group."""
    from gonomaly.report.plots import plot_anomaly_overlays

    groups = bundle.test.groups
    names = list(dict.fromkeys(groups))
    index = [i for name in names for i in list(np.flatnonzero(groups == name))[:per_group]]
    images = bundle.test.images[index]
    maps = detector.anomaly_map(images)
    masks = bundle.test.masks[index] if bundle.test.masks is not None else None
    return plot_anomaly_overlays(images.transpose(0, 2, 3, 1).squeeze(-1) if images.shape[1] == 1
                                 else images.transpose(0, 2, 3, 1), maps, path, masks=masks,
                                 captions=[str(groups[i]) for i in index],
                                 title=f"{bundle.description['category']}: {detector.model_name}, "
                                       f"score {detector.effective('score')}, map {detector.effective('error_map')}")
