"""``gonomaly evaluate`` and ``gonomaly run``: score a labelled test set, save the metrics, print the table."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from gonomaly import distributed
from gonomaly.data import load_data, parse_spec
from gonomaly.errors import GonomalyError
from gonomaly.evaluation import Evaluation, slug
from gonomaly.workflow.config import DetectorConfig, Echo
from gonomaly.workflow.fitting import TrainConfig, train_run

log = logging.getLogger("gonomaly")


@dataclass(frozen=True)
class EvaluateConfig:
    """Score the test set of the data SPEC ``data`` with the detector saved in ``run_dir``.

    ``out``: folder for metrics.json, scores.npz and examples [default: RUN_DIR/eval-SPEC];
    ``json_path``: a copy of the metrics; ``report_dir``: also write the HTML report there."""

    run_dir: Path
    data: str
    out: Path | None = None
    json_path: Path | None = None
    report_dir: Path | None = None
    seed: int = 0
    data_dir: Path | None = None
    device: str = "cpu"
    progress: bool = False


@dataclass(frozen=True)
class RunConfig:
    """The main job: train on clean MNIST digits (as many as the mnist-c SPEC ``data`` says),
    evaluate clean against corrupted test digits; ``out`` gets the run, eval/ and report/."""

    out: Path = Path("runs/default")
    data: str = "mnist-c"
    detector: DetectorConfig = field(default_factory=DetectorConfig)  # the digits' defaults
    data_dir: Path | None = None
    image_size: int | None = None
    progress: bool = False


@dataclass(frozen=True)
class EvaluationOutput:
    """Where an evaluation goes: the folder, an optional metrics copy, an optional report."""

    folder: Path
    json_path: Path | None = None
    report_dir: Path | None = None
    run_dir: Path | None = None


def evaluate(config: EvaluateConfig, echo: Echo = print) -> Evaluation | None:
    """Load the run, score the test set (sharded across torchrun's ranks) and save; ``echo``
    gets the metric table. Returns the evaluation (None on ranks other than 0)."""
    from gonomaly.detector import ReconstructionDetector

    with distributed.session(config.device):
        detector = ReconstructionDetector.load(config.run_dir).to(config.device)
        detector.progress = config.progress
        bundle = load_data(config.data, config.data_dir, seed=config.seed,
                           image_size=detector.image_shape_[1])
        output = EvaluationOutput(config.out or config.run_dir / f"eval-{slug(config.data)}",
                                  config.json_path, config.report_dir, config.run_dir)
        return evaluate_and_save(detector, bundle, output, config.seed, echo)


def run(config: RunConfig, echo: Echo = print) -> Evaluation | None:
    """Train, save, evaluate and report in ``config.out``; ``echo`` gets the metric table."""
    with distributed.session(config.detector.device):
        spec = parse_spec(config.data)
        if spec.kind != "mnist-c":
            raise GonomalyError(f"run: --data must be an mnist-c spec, got '{config.data}'")
        start = time.perf_counter()
        seed = config.detector.seed
        bundle = load_data(spec, config.data_dir, seed=seed)
        train_spec = "mnist" + (f":n_train={spec.options['n_train']}" if "n_train" in spec.options else "")
        detector, _ = train_run(TrainConfig(out=config.out, data=train_spec, detector=config.detector,
                                            data_dir=config.data_dir, image_size=config.image_size,
                                            resumable=False, progress=config.progress))
        out = config.out
        result = evaluate_and_save(detector, bundle, EvaluationOutput(
            out / "eval", out / "eval" / "summary.json", report_dir=out / "report", run_dir=out), seed, echo)
        log.info("run finished in %.0f s", time.perf_counter() - start)
    return result


def format_false_alarms(entry: dict) -> str:
    """The measured false-alarm rate on the normal test images beside the one promised."""
    bound = "at most" if entry["guaranteed"] else "about"
    return (f"false alarms: {entry['flagged']}/{entry['n_normal']} normal test images = "
            f"{entry['measured']:.2%} (expected {bound} {entry['expected']:.2%}, {entry['rule']} "
            f"calibrated on {entry['n_calibration']} validation images)")


def evaluate_and_save(detector, bundle, output: EvaluationOutput, seed: int = 0,
                      echo: Echo = print) -> Evaluation | None:
    """Score ``bundle.test``, save metrics, scores and examples, echo the table, build the report."""
    from gonomaly.detector import SCORE_BATCH_SIZE
    from gonomaly.evaluation import evaluate as evaluate_scores
    from gonomaly.io import atomic_write_json
    from gonomaly.metrics import format_table
    from gonomaly.report.examples import save_examples

    # Under torchrun each rank scores its shard; rank 0 gets all scores in order and writes.
    images = bundle.test.images
    scores = distributed.sharded(lambda start, stop: detector.score_samples(images[start:stop]),
                                 len(images), SCORE_BATCH_SIZE)
    if scores is None:
        return None
    result = evaluate_scores(detector, bundle, scores=scores)
    result.save(output.folder)
    save_examples(detector, bundle.test, result.scores, output.folder, seed=seed)
    if output.json_path is not None:
        atomic_write_json(output.json_path, result.metrics)
    echo(format_table(result.metrics))
    if result.metrics.get("false_alarms"):
        echo(format_false_alarms(result.metrics["false_alarms"]))
    log.info("results written to %s", output.folder)
    if output.report_dir is not None:
        from gonomaly.report.html import build_report

        log.info("report written to %s", build_report(output.folder, output.report_dir, output.run_dir))
    return result
