"""``mse``: the mean of the raw error map (the reconstruction MSE with the l2 map), the
reference notebooks' score."""

from __future__ import annotations

import torch

from gonomaly.scores.base import ScoreInputs, Scorer, register


@register
class MeanError(Scorer):
    name = "mse"

    def forward(self, inputs: ScoreInputs) -> torch.Tensor:
        return inputs.raw_map.flatten(1).mean(1)
