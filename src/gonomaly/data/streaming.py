"""Streaming image files in batches, decoded by DataLoader workers, in input order.

Memory stays flat whatever the number of files: only the paths and a few batches in flight are
held. A bad file stops the stream with its own one-line error, raised in the main process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gonomaly.errors import GonomalyError


class ImageFiles(Dataset):
    """Decodes one file per item with ``read``; an error travels back as a message, because an
    exception raised in a worker would reach the user wrapped in a worker traceback."""

    def __init__(self, paths: Sequence[Path], read: Callable[[Path], np.ndarray]):
        self.paths = paths
        self.read = read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, self.read(self.paths[index]), ""
        except GonomalyError as exc:
            return index, None, str(exc)


def _collate(items):
    errors = [message for _, _, message in items if message]
    if errors:
        return None, None, errors[0]
    indices = [index for index, _, _ in items]
    return indices, torch.from_numpy(np.stack([image for _, image, _ in items])), ""


def stream_batches(paths: Sequence[Path], read: Callable[[Path], np.ndarray], batch_size: int,
                   workers: int) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Yield (paths, images) batches in input order; raise the first bad file's error."""
    loader = DataLoader(ImageFiles(paths, read), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=_collate,
                        persistent_workers=False, prefetch_factor=2 if workers else None)
    for indices, images, error in loader:
        if error:
            raise GonomalyError(error)
        yield [paths[i] for i in indices], images.numpy()
