"""``max``: the largest pixel of the smoothed anomaly map (one coherent defect suffices)."""

from __future__ import annotations

import torch

from gonomaly.scores.base import ScoreInputs, Scorer, register


@register
class MaxError(Scorer):
    name = "max"
    reads_smoothed_map = True

    def forward(self, inputs: ScoreInputs) -> torch.Tensor:
        return inputs.smoothed_map.flatten(1).max(1).values
