"""Dynamic batching, as inference servers do it: requests that arrive together are scored in
one call, up to ``max_batch`` images, waiting at most ``max_wait_ms`` for a batch to fill.

Scoring runs in one dedicated thread, so the event loop keeps accepting and decoding requests
meanwhile; the next batch is formed from whatever arrived while the previous one was scored,
so batches grow with the load by themselves. A request's images always stay together and in
order; the detector scores each image independently of its batch-mates.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

# score(images (N, C, H, W), map_rows: indices) -> (scores (N,), maps (len(map_rows), H, W) or None)
ScoreFunction = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]


@dataclass
class _Job:
    images: np.ndarray
    with_maps: bool
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """``await submit(images, with_maps)`` -> ``(scores, maps or None)`` for one request.

    ``on_batch(size)`` is called with each batch's image count (for the metrics). Call
    ``start()`` inside the running event loop and ``await stop()`` at shutdown: ``stop``
    scores what is queued, then ends the thread."""

    def __init__(self, score: ScoreFunction, *, max_batch: int = 64, max_wait_ms: float = 5.0,
                 on_batch: Callable[[int], None] | None = None):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}")
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self._score, self._on_batch = score, on_batch
        self._jobs: collections.deque[_Job] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._closing = False
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gonomaly-score")

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gonomaly-batcher")

    async def stop(self) -> None:
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    @property
    def queued_images(self) -> int:
        return sum(len(job.images) for job in self._jobs)

    async def submit(self, images: np.ndarray, with_maps: bool = False):
        if self._task is None or self._closing:
            raise RuntimeError("the batcher is not running")
        job = _Job(images, with_maps, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._arrived.set()
        return await job.future

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                return
            await self._score_batch(batch)

    async def _wait_for_arrival(self, timeout: float | None) -> bool:
        """False when ``timeout`` passed with nothing new."""
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _next_batch(self) -> list[_Job]:
        """The jobs of the next batch; empty once stopping with nothing queued."""
        while not self._jobs:
            if self._closing:
                return []
            await self._wait_for_arrival(None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while self.queued_images < self.max_batch and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._wait_for_arrival(remaining):
                break
        batch = [self._jobs.popleft()]  # a request larger than max_batch goes alone
        size = len(batch[0].images)
        while self._jobs and size + len(self._jobs[0].images) <= self.max_batch:
            size += len(self._jobs[0].images)
            batch.append(self._jobs.popleft())
        return batch

    async def _score_batch(self, batch: list[_Job]) -> None:
        images = np.concatenate([job.images for job in batch])
        starts = np.cumsum([0] + [len(job.images) for job in batch])
        map_rows = np.concatenate([np.arange(start, start + len(job.images))
                                   for job, start in zip(batch, starts) if job.with_maps] or [[]]).astype(np.int64)
        if self._on_batch is not None:
            self._on_batch(len(images))
        try:
            scores, maps = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._score, images, map_rows)
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the batcher goes on
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        map_index = np.full(len(images), -1)
        map_index[map_rows] = np.arange(len(map_rows))
        for job, start in zip(batch, starts):
            rows = slice(start, start + len(job.images))
            job_maps = maps[map_index[rows]] if job.with_maps and maps is not None else None
            if not job.future.done():  # done: the client went away
                job.future.set_result((scores[rows], job_maps))
