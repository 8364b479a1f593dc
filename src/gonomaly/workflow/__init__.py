"""Every ``gonomaly`` command as a library function that takes one config object.

    from gonomaly.workflow import DetectorConfig, TrainConfig, train
    train(TrainConfig(out=Path("runs/gon"), data="mnist", detector=DetectorConfig(epochs=5)))

The benchmarks (``gonomaly benchmark ...``) live in ``gonomaly.bench`` and build on these.
"""

from gonomaly.workflow.config import DetectorConfig, Echo, make_detector, resolve_augment
from gonomaly.workflow.evaluating import (
    EvaluateConfig,
    EvaluationOutput,
    RunConfig,
    evaluate,
    evaluate_and_save,
    run,
)
from gonomaly.workflow.file_scoring import ScoreConfig, score
from gonomaly.workflow.fitting import ResumeConfig, TrainConfig, refuse_under_torchrun, resume, train, train_run
from gonomaly.workflow.tools import (
    CorruptConfig,
    Corrupted,
    ExportConfig,
    ReportConfig,
    corrupt,
    corruption_names,
    export,
    report,
)

__all__ = ["CorruptConfig", "Corrupted", "DetectorConfig", "Echo", "EvaluateConfig", "EvaluationOutput",
           "ExportConfig", "ReportConfig", "ResumeConfig", "RunConfig", "ScoreConfig", "TrainConfig", "corrupt",
           "corruption_names", "evaluate", "evaluate_and_save", "export", "make_detector",
           "refuse_under_torchrun", "report", "resolve_augment", "resume", "run", "score", "train", "train_run"]
