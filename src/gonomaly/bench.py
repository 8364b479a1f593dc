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
from collections.abc import Callable, Mapping, Sequence
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
    seeds: Sequence[int] | None = None

    @property
    def seed_list(self) -> list[int]:
        """The seeds to run: ``seeds``, or the detector's one seed."""
        return list(self.seeds) if self.seeds else [self.detector.seed]

    def with_seed(self, seed: int) -> BenchmarkConfig:
        """This benchmark for one seed, writing no file (the multi-seed result is written once)."""
        return replace(self, detector=replace(self.detector, seed=seed), seeds=None, json_path=None)
    data_kind: str = "mnist"

    @property
    def settings(self) -> DetectorConfig:
        """The detector settings in use: ``detector`` with the data kind's defaults filled in."""
        return self.settings_of(self.detector.model)

    def settings_of(self, model: str) -> DetectorConfig:
        """``detector``'s settings for ``model``: unset ones are the defaults for the data kind
        and ``model`` (as ``train`` has them)."""
        return resolve_defaults(replace(self.detector, model=model), self.data_kind)

    def detector_of(self, model: str, **changes) -> object:
        """A new detector of ``model`` with this benchmark's hyper-parameters and ``changes``."""
        return make_detector(replace(self.settings_of(model), **changes), progress=self.progress)


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

    def with_seed(self, seed: int) -> MvtecBenchmarkConfig:
        """As ``BenchmarkConfig.with_seed``; with several seeds, each seed's figures in
        ``figures/seed<N>``."""
        single = super().with_seed(seed)
        if self.figures is None or len(self.seed_list) == 1:
            return single
        return replace(single, figures=self.figures / f"seed{seed}")


def finish(results: dict, config: BenchmarkConfig, start: float) -> dict:
    """Record the total time and write the JSON file the config asks for."""
    from gonomaly.io import atomic_write_json

    results["seconds"] = round(time.perf_counter() - start, 1)
    if config.json_path is not None:
        atomic_write_json(config.json_path, results)
    log.info("benchmark finished in %.0f s", results["seconds"])
    return results


def aggregate_seeds(values: Sequence):
    """One seed-independent view of several seeds' results of the same shape: every number becomes
    ``{"mean": m, "std": s}`` (``s`` the sample standard deviation, ddof 1; 0 for one seed),
    dicts and lists are aggregated item by item, and any other value (a name) is kept when
    every seed has the same one, else listed. A number that is None in any seed gives None."""
    first = values[0]
    if isinstance(first, dict):
        return {key: aggregate_seeds([v[key] for v in values]) for key in first}
    if isinstance(first, list | tuple) and all(len(v) == len(first) for v in values):
        return [aggregate_seeds(list(items)) for items in zip(*values, strict=True)]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        numbers = np.asarray(values, dtype=float)
        return {"mean": float(numbers.mean()),
                "std": float(numbers.std(ddof=1)) if len(numbers) > 1 else 0.0}
    if any(v is None for v in values):
        return None
    return first if all(v == first for v in values) else list(values)


def over_seeds(config: BenchmarkConfig, once: Callable[[BenchmarkConfig, Echo], dict], body: str,
               echo: Echo, summarize: Callable[[dict], str]) -> dict:
    """Run ``once`` (one seed's whole benchmark) for each seed; the result: ``protocol`` (with
    ``seeds``), ``per_seed`` (seed -> that seed's results), ``summary`` (``aggregate_seeds`` of
    their ``body`` entry). With several seeds ``echo`` gets ``summarize(result)`` at the end."""
    start = time.perf_counter()
    per_seed = {}
    for seed in config.seed_list:
        if len(config.seed_list) > 1:
            echo(f"\n=== seed {seed}")
        per_seed[str(seed)] = once(config.with_seed(seed), echo)
    protocol = dict(next(iter(per_seed.values()))["protocol"])
    protocol.pop("seed", None)
    results = {"protocol": {**protocol, "seeds": config.seed_list}, "per_seed": per_seed,
               "summary": aggregate_seeds([r[body] for r in per_seed.values()])}
    if len(config.seed_list) > 1:
        echo(summarize(results))
    return finish(results, config, start)


def plus_minus(entry: dict | None, digits: int) -> str:
    """``mean +- std`` of an aggregated number (``-`` for None)."""
    if entry is None:
        return "-"
    return f"{entry['mean']:.{digits}f} +- {entry['std']:.{digits}f}"


def mean_of(value) -> float:
    """One seed's number, or an aggregated number's mean."""
    return value["mean"] if isinstance(value, dict) else value


def figure(value, digits: int) -> str:
    """One seed's number, or an aggregated one as ``mean +- std``, to ``digits`` decimals."""
    if value is None or isinstance(value, dict):
        return plus_minus(value, digits)
    return f"{value:.{digits}f}"


def mnist_c_benchmark(config: MnistCBenchmarkConfig, echo: Echo = print) -> dict:
    """Per model and score: per corruption n, flagged, AUROC; pooled confusion, AUROC, AUPR; times
    (``over_seeds``: per seed and as mean +- std). ``echo`` gets each run's table as it finishes."""
    return over_seeds(config, _mnist_c_once, "runs", echo, format_mnist_c_summary)


def _mnist_c_once(config: MnistCBenchmarkConfig, echo: Echo) -> dict:
    """The MNIST-C protocol for one seed."""
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
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


def format_mnist_c_summary(results: dict) -> str:
    """The runs' mean +- std over the seeds as a Markdown table: a column per model and score,
    a row per corruption (flagged / n, AUROC), then the pooled figures."""
    runs = results["summary"]
    seeds = ",".join(str(s) for s in results["protocol"]["seeds"])

    def cell(entry):
        auroc = "" if entry["auroc"] is None else f", {plus_minus(entry['auroc'], 3)}"
        return f"{plus_minus(entry['flagged'], 1)} / {entry['n']['mean']:.0f}{auroc}"

    def pooled(label, text):
        return f"| **{label}** | " + " | ".join(text(r) for r in runs) + " |"

    lines = [f"\n== mean +- std over seeds {seeds}",
             "| corruption | " + " | ".join(f"{r['model'].upper()} {r['score']}" for r in runs) + " |",
             "| --- " * (len(runs) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(r["groups"][name]) for r in runs) + " |"
              for name in runs[0]["groups"]]
    lines += [pooled("clean passed", lambda r: _count(r["confusion"], "tn", "fp")),
              pooled("corrupted flagged", lambda r: _count(r["confusion"], "tp", "fn")),
              pooled("pooled AUROC", lambda r: plus_minus(r["image_auroc"], 4)),
              pooled("pooled AUPR", lambda r: plus_minus(r["image_aupr"], 4)),
              pooled("training time (s)", lambda r: f"{r['train_seconds']['mean']:.0f}"),
              pooled("scoring time (s)", lambda r: f"{r['score_seconds']['mean']:.0f}")]
    return "\n".join(lines)


def _count(confusion: dict, hit: str, miss: str) -> str:
    """``hit`` of ``hit + miss`` as mean +- std (the total is the same in every seed)."""
    total = confusion[hit]["mean"] + confusion[miss]["mean"]
    return f"{plus_minus(confusion[hit], 1)} / {total:,.0f}"


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
    set are the anomalies; AUROC of the score ``scores[0]`` per digit and on average), per seed
    and as mean +- std (``over_seeds``). ``echo`` gets the comparison as Markdown tables."""
    return over_seeds(config, _models_once, "models", echo,
                      lambda results: format_models(results, results["summary"]))


def _models_once(config: ModelsBenchmarkConfig, echo: Echo) -> dict:
    """Every model side by side for one seed."""
    start = time.perf_counter()
    settings = config.settings
    spec = f"mnist-c:n_test={config.n_test}" + (f",n_train={config.n_train}" if config.n_train else "")
    data = load_data(spec, config.data_dir, seed=settings.seed)
    results = {"protocol": {"mnist_c": spec, "source": data.source, "n_train": len(data.train),
                            # the length asked for; None: each model's defaults (its row's steps)
                            "n_test": len(data.test), "epochs": config.detector.epochs,
                            "batch_size": config.detector.batch_size, "seed": settings.seed,
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
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


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
            "steps": detector.training_stats_["steps"], "batch_size": detector.batch_size,
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


def format_models(results: dict, rows: dict | None = None) -> str:
    """The comparison as Markdown tables (the README shows them): ``rows`` (default: the one
    seed's ``results["models"]``) or their mean +- std over the seeds (``results["summary"]``)."""
    p, scores = results["protocol"], results["protocol"]["scores"]
    rows = results["models"] if rows is None else rows
    lines = ["| model | parameters | steps x batch | training s / epoch | clean test MSE | "
             + " | ".join(f"MNIST-C AUROC ({s})" for s in scores) + f" | one-class AUROC ({scores[0]}, mean) |",
             "| --- " * (6 + len(scores)) + "|"]
    for model, row in rows.items():
        parameters, steps = (mean_of(row[key]) for key in ("parameters", "steps"))
        lines.append(f"| {model} | {parameters:,.0f} | {steps:,.0f} x {mean_of(row['batch_size']):.0f} | "
                     f"{figure(row['seconds_per_epoch'], 1)} | "
                     f"{figure(row['clean_mse'], 4)} | "
                     + " | ".join(figure(row["mnist_c_auroc"][s], 4) for s in scores)
                     + f" | {figure(row.get('one_class_mean'), 4)} |")
    if p["digits"]:
        lines += ["", "| model | " + " | ".join(str(d) for d in p["digits"]) + " | mean |",
                  "| --- " * (len(p["digits"]) + 2) + "|"]
        for model, row in rows.items():
            lines.append(f"| {model} | " + " | ".join(figure(row["one_class_auroc"][d], 3) for d in p["digits"])
                         + f" | {figure(row['one_class_mean'], 3)} |")
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
    AUROC, pixel AUROC, AUPRO, the confusion at the threshold and the training time per row, per
    seed and as mean +- std (``over_seeds``). ``echo`` gets each row as it finishes (the first
    with a header)."""
    return over_seeds(config, _mvtec_once, "runs", echo, format_mvtec_summary)


def _mvtec_once(config: MvtecBenchmarkConfig, echo: Echo) -> dict:
    """Every category and model for one seed."""
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
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


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
    """One row of the table: one seed's metrics, or their mean +- std (wider than the header)."""
    c = m["confusion"]
    variant = f"{m['error_map']}/{mean_of(m['sigma']):g}/{m['score']}"
    row = (f"{m['category']:<12}{m['model']:<6}{variant:<15}"
           f"{figure(m['image_auroc'], 3):>8}{figure(m.get('pixel_auroc'), 3):>8}"
           f"{figure(m.get('aupro'), 3):>8}" + "".join(f"{figure(c[k], 0):>5}" for k in ("tn", "fp", "fn", "tp"))
           + f"{mean_of(m['train_seconds']):>9.1f}")
    head = (f"{'category':<12}{'model':<6}{'map/sigma/score':<15}{'img AUC':>8}{'pix AUC':>8}{'AUPRO':>8}"
            f"{'tn':>5}{'fp':>5}{'fn':>5}{'tp':>5}{'train s':>9}")
    return f"{head}\n{row}" if header else row


def format_mvtec_summary(results: dict) -> str:
    """Every row's mean +- std over the seeds."""
    seeds = ",".join(str(s) for s in results["protocol"]["seeds"])
    return "\n".join([f"\n== mean +- std over seeds {seeds}"]
                     + [format_mvtec_row(m, header=i == 0) for i, m in enumerate(results["summary"])])


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
