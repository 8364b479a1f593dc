"""``topk``: the mean of the ``top_k`` largest pixels of the smoothed anomaly map."""

from __future__ import annotations

from typing import Any

import torch

from gonomaly.scores.base import ScoreInputs, Scorer, register


@register
class TopKError(Scorer):
    name = "topk"
    reads_smoothed_map = True

    def __init__(self, *, top_k: int = 100, **params: Any):
        super().__init__(**params)
        self.top_k = top_k

    def forward(self, inputs: ScoreInputs) -> torch.Tensor:
        flat = inputs.smoothed_map.flatten(1)
        return flat.topk(min(self.top_k, flat.shape[1]), dim=1).values.mean(1)
