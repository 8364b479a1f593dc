"""``gonomaly benchmark mnist-c``: the seed's corrupted-MNIST protocol, end to end, per model.

Train on the clean MNIST training digits; test the first 2,000 test digits, clean, against the
same digits under each corruption; threshold at mean + 2 std of the training scores. Each model
is scored by its plain reconstruction error and by the fused score, from one trained network.
"""

from __future__ import annotations

import copy
import logging
import time

import click

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
        train_seconds = time.perf_counter() - t0
        for score in scores:
            variant = copy.copy(detector)
            variant.score = score
            t1 = time.perf_counter()
            variant.fit_scoring(data.train)
            evaluation = evaluate(variant, data, model_name=model)
            metrics = evaluation.metrics
            metrics.update(score=score, train_seconds=round(train_seconds, 1),
                           score_seconds=round(time.perf_counter() - t1, 1))
            results["runs"].append(metrics)
            click.echo(format_run(metrics))
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


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
