"""Image scores, one module each, found by name in ``SCORERS``.

Adding a score: a module here with a ``Scorer`` subclass decorated by ``@register``, and its
import below.
"""

from gonomaly.scores import fused, maximum, mse, topk  # noqa: F401 - each registers its score
from gonomaly.scores.base import (
    AUTO_SCORE,
    SCORERS,
    SCORING_PARAMS,
    ScoreInputs,
    Scorer,
    register,
    score_names,
    scorer_class,
)
from gonomaly.scores.maps import ERROR_MAPS

MAP_SCORES = tuple(name for name, cls in SCORERS.items() if cls.reads_smoothed_map)

__all__ = ["AUTO_SCORE", "ERROR_MAPS", "MAP_SCORES", "SCORERS", "SCORING_PARAMS", "score_names",
            "ScoreInputs", "Scorer", "register", "scorer_class"]
