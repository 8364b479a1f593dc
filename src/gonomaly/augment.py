"""Training-time augmentation for small training sets: flips and 90-degree rotations.

Off by default. Which ones keep an image normal depends on the data (a transistor turned
round is a defect): ``gonomaly.data.mvtec.AUGMENTATIONS`` lists them per MVTec category. Each
batch's draws come from a generator seeded by (seed, global step), so an interrupted and
resumed training sees the same augmented batches without storing any extra random state.
"""

from __future__ import annotations

import torch

from gonomaly.errors import GonomalyError

AUGMENTATIONS = ("hflip", "vflip", "rot90")


def parse_augment(text: str) -> tuple[str, ...]:
    """``""`` (none) or a comma-separated subset of ``AUGMENTATIONS``."""
    if not isinstance(text, str):
        raise GonomalyError(f"augment {text!r}: expected a string such as 'hflip,rot90'")
    ops = tuple(op.strip() for op in text.split(",") if op.strip())
    unknown = [op for op in ops if op not in AUGMENTATIONS]
    if unknown:
        raise GonomalyError(f"augment '{text}': unknown {', '.join(unknown)} "
                            f"(known: {', '.join(AUGMENTATIONS)})")
    return ops


def augment_batch(batch: torch.Tensor, augment: str, seed: int, step: int) -> torch.Tensor:
    """Each image flipped and/or rotated at random (probability 1/2 per flip, a uniform number
    of quarter turns), drawn from (seed, step) alone."""
    ops = parse_augment(augment)
    if not ops:
        return batch
    generator = torch.Generator().manual_seed((seed * 1_000_003 + step) % (1 << 63))
    n = len(batch)
    out = batch.clone()
    for op in ops:
        if op == "rot90":
            if batch.shape[2] != batch.shape[3]:
                raise GonomalyError("augment rot90: needs square images")
            turns = torch.randint(4, (n,), generator=generator)
            for k in (1, 2, 3):
                chosen = turns == k
                out[chosen] = torch.rot90(out[chosen], k, (2, 3))
        else:
            chosen = torch.rand(n, generator=generator) < 0.5
            out[chosen] = out[chosen].flip(3 if op == "hflip" else 2)
    return out
