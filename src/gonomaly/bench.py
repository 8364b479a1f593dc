"""``gonomaly benchmark mnist-c``, ``benchmark models`` and ``benchmark mvtec``, end to end, per model.

MVTec AD: one model per category, image and pixel metrics (see ``mvtec_benchmark``).

Train on the clean MNIST training digits; test the first 2,000 test digits, clean, against the
same digits under each corruption; threshold at mean + 2 std of the training scores. Each model
is scored by its plain reconstruction error and by the fused score, from one trained network.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import click
import numpy as np

from gonomaly.data import load_data
from gonomaly.evaluation import evaluate

log = logging.getLogger("gonomaly")


def mnist_c_benchmark(models: list[str], scores: list[str], epochs: int, batch_size: int,
                      seed: int, spec: str, data_dir, make_detector, progress: bool) -> dict:
    start = time.perf_counter()
    data = load_data(spec, data_dir, seed=seed)
    results = {"protocol": {"spec": spec, "source": data.source, "n_train": len(data.train),
                            "n_test": len(data.test), "epochs": epochs, "batch_size": batch_size,
                            "seed": seed, "threshold": "mean-std:2"},
               "runs": []}
    for model in models:
        detector = make_detector(model, epochs=epochs, batch_size=batch_size, seed=seed,
                                 progress=progress)
        t0 = time.perf_counter()
        detector.fit(data.train)
        results["runs"] += score_variants(detector, data, model, scores, time.perf_counter() - t0)
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


def score_variants(detector, data, model: str, scores: list[str], train_seconds: float,
                   echo: bool = True) -> list[dict]:
    """Evaluate one trained network under each score (refitting only the scoring)."""
    runs = []
    for score in scores:
        variant = copy.copy(detector)
        variant.score = score
        t1 = time.perf_counter()
        variant.fit_scoring(data.train)
        metrics = evaluate(variant, data, model_name=model).metrics
        metrics.update(score=score, train_seconds=round(train_seconds, 1),
                       score_seconds=round(time.perf_counter() - t1, 1))
        runs.append(metrics)
        if echo:
            click.echo(format_run(metrics))
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


def models_benchmark(models: list[str], scores: list[str], epochs: int, batch_size: int, seed: int,
                     n_train: int | None, n_test: int, one_class_n_train: int | None,
                     one_class_n_test: int, digits: list[int], data_dir, make_detector,
                     progress: bool) -> dict:
    """``gonomaly benchmark models``: every model on the MNIST-C protocol (parameters, training
    seconds per epoch, reconstruction MSE of the clean test digits, AUROC per score) and on
    one-class MNIST (train on one digit's training images, the other nine digits of the test
    set are the anomalies; AUROC of the score ``scores[0]`` per digit and on average)."""
    start = time.perf_counter()
    spec = f"mnist-c:n_test={n_test}" + (f",n_train={n_train}" if n_train else "")
    data = load_data(spec, data_dir, seed=seed)
    clean = data.test.images[data.test.labels == 0]
    results = {"protocol": {"mnist_c": spec, "source": data.source, "n_train": len(data.train),
                            "n_test": len(data.test), "epochs": epochs, "batch_size": batch_size,
                            "seed": seed, "scores": scores, "one_class_n_train": one_class_n_train,
                            "one_class_n_test": one_class_n_test, "digits": digits},
               "models": {}}
    for model in models:
        detector = make_detector(model, epochs=epochs, batch_size=batch_size, seed=seed,
                                 progress=progress)
        t0 = time.perf_counter()
        detector.fit(data.train)
        train_seconds = time.perf_counter() - t0
        runs = score_variants(detector, data, model, scores, train_seconds, echo=False)
        row = {"parameters": sum(p.numel() for p in detector.model_.parameters()),
               "seconds_per_epoch": round(train_seconds / epochs, 1),
               "clean_mse": float(((detector.reconstruct(clean) - clean) ** 2).mean()),
               "mnist_c_auroc": {r["score"]: r["image_auroc"] for r in runs}, "one_class_auroc": {}}
        results["models"][model] = row
        log.info("%s: %s", model, {k: v for k, v in row.items() if k != "one_class_auroc"})
        for digit in digits:
            one_class = load_data(f"mnist:classes={digit},n_test={one_class_n_test}" +
                                  (f",n_train={one_class_n_train}" if one_class_n_train else ""),
                                  data_dir, seed=seed)
            detector = make_detector(model, epochs=epochs, batch_size=batch_size, seed=seed,
                                     score=scores[0], progress=progress)
            detector.fit(one_class.train)
            row["one_class_auroc"][digit] = evaluate(detector, one_class).metrics["image_auroc"]
        if digits:
            row["one_class_mean"] = float(sum(row["one_class_auroc"].values()) / len(digits))
        log.info("%s: one-class AUROC %s", model, row["one_class_auroc"])
    results["seconds"] = round(time.perf_counter() - start, 1)
    click.echo(format_models(results))
    return results


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


def mvtec_benchmark(root: str, categories: list[str] | None, image_size: int, models: list[str],
                    epochs: int, batch_size: int, seed: int, make_detector, progress: bool,
                    figures: Path | None = None, augment: str = "", variants: list[dict] | None = None,
                    **options) -> dict:
    """One model per category and model kind: train on train/good, score the test set; image
    AUROC, pixel AUROC, AUPRO, the confusion at the threshold and the training time per row.
    ``augment="auto"`` takes each category's allowed flips and rotations. ``variants`` (dicts
    of ``error_map``, ``sigma``, ``score``) score one trained network several ways, one row
    each, with the threshold refitted on the training images."""
    from gonomaly.data.mvtec import bundle_from_layout, category_folders, scan_category
    from gonomaly.errors import GonomalyError

    start = time.perf_counter()
    folders = category_folders(root)
    if categories:
        missing = [c for c in categories if c not in {f.name for f in folders}]
        if missing:
            raise GonomalyError(f"{root}: no category {', '.join(missing)} (found: "
                                f"{', '.join(f.name for f in folders)})")
        folders = [f for f in folders if f.name in categories]
    results = {"protocol": {"root": str(root), "image_size": image_size, "epochs": epochs,
                            "batch_size": batch_size, "seed": seed, "threshold": "mean-std:2",
                            "augment": augment, **options},
               "runs": []}
    for folder in folders:
        bundle = bundle_from_layout(scan_category(folder), image_size, f"mvtec:{folder}")
        for model in models:
            chosen = bundle.description.get("augment") or "" if augment == "auto" else augment
            detector = make_detector(model, epochs=epochs, batch_size=batch_size, seed=seed,
                                     progress=progress, augment=chosen, **options)
            t0 = time.perf_counter()
            detector.fit(bundle.train)
            train_seconds = time.perf_counter() - t0
            for variant in variants or [{}]:
                scored = copy.copy(detector)
                if variant:
                    for key, value in variant.items():
                        setattr(scored, key, value)
                    scored.fit_scoring(bundle.train)
                metrics = evaluate(scored, bundle, model_name=model).metrics
                metrics.update(category=folder.name, train_seconds=round(train_seconds, 1),
                               augment=chosen, n_train=len(bundle.train), error_map=scored.error_map,
                               sigma=scored.sigma, top_k=scored.top_k)
                results["runs"].append(metrics)
                if figures is not None:
                    name = f"mvtec_{folder.name}_{model}_{scored.error_map}_s{scored.sigma:g}_{scored.score}.png"
                    metrics["figure"] = str(_mvtec_figure(scored, bundle, figures / name))
                click.echo(format_mvtec_row(metrics, header=len(results["runs"]) == 1))
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


def format_mvtec_row(m: dict, header: bool = False) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    c = m["confusion"]
    row = (f"{m['category']:<12}{m['model']:<6}{m['error_map'] + '/' + format(m['sigma'], 'g') + '/' + m['score']:<15}"
           f"{fmt(m['image_auroc']):>8}{fmt(m.get('pixel_auroc')):>8}"
           f"{fmt(m.get('aupro')):>8}{c['tn']:>5}{c['fp']:>5}{c['fn']:>5}{c['tp']:>5}{m['train_seconds']:>9.1f}")
    head = (f"{'category':<12}{'model':<6}{'map/sigma/score':<15}{'img AUC':>8}{'pix AUC':>8}{'AUPRO':>8}{'tn':>5}{'fp':>5}"
            f"{'fn':>5}{'tp':>5}{'train s':>9}")
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
                                       f"score {detector.score}, map {detector.error_map}")
