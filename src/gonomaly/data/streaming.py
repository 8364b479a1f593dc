"""Streaming image files in batches, decoded by DataLoader workers, in input order.

Memory stays flat whatever the number of files: only the paths and a few batches in flight are
held. ``stream_batches`` stops at a bad file with its own one-line error, raised in the main
process; ``stream_with_errors`` carries each bad file's error along with the readable images.
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
    """(indices, the readable images stacked, one message per item: "" when readable). The
    images travel as one tensor (shared memory between the worker and the main process)."""
    indices = [index for index, _, _ in items]
    readable = [image for _, image, message in items if not message]
    images = torch.from_numpy(np.stack(readable)) if readable else None
    return indices, images, [message for _, _, message in items]


def stream_with_errors(paths: Sequence[Path], read: Callable[[Path], np.ndarray], batch_size: int,
                       workers: int) -> Iterator[tuple[list[Path], np.ndarray | None, list[str]]]:
    """Yield (paths, images, messages) batches in input order: ``images`` stacks the readable
    files' images (None when no file of the batch is readable), ``messages`` holds each file's
    one-line error ("" for a readable one), so one bad file never loses its batch."""
    loader = DataLoader(ImageFiles(paths, read), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=_collate,
                        persistent_workers=False, prefetch_factor=2 if workers else None)
    for indices, images, messages in loader:
        yield [paths[i] for i in indices], (None if images is None else images.numpy()), messages


def stream_batches(paths: Sequence[Path], read: Callable[[Path], np.ndarray], batch_size: int,
                   workers: int) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Yield (paths, images) batches in input order; raise the first bad file's error."""
    for chunk, images, messages in stream_with_errors(paths, read, batch_size, workers):
        error = next((message for message in messages if message), "")
        if error:
            raise GonomalyError(error)
        yield chunk, images
