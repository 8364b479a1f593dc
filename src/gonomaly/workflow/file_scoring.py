"""``gonomaly score``: stream image files through a saved detector, one line per image."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gonomaly import distributed
from gonomaly.workflow.config import Echo

ON_ERROR = ("skip", "fail")  # the --on-error choices


@dataclass(frozen=True)
class ScoreConfig:
    """Score image files or folders of them with the detector saved in ``run_dir``.

    ``workers`` None: 2 decoding processes for 1,000 files or more, else 0. ``resize`` None:
    resize to the model's size when it was trained on mvtec or folder data. ``overlay_dir``:
    also write each image's anomaly-map overlay there. ``max_pixels``: refuse larger images
    from their header, before decoding them. ``on_error``: "skip" reports each unreadable file
    and scores the others, "fail" stops at the first one; None: "fail" when ``paths`` is one
    file, else "skip"."""

    run_dir: Path
    paths: Sequence[str | Path]
    as_json: bool = False
    batch_size: int = 256
    workers: int | None = None
    max_pixels: int = 50_000_000
    resize: bool | None = None
    overlay_dir: Path | None = None
    device: str = "cpu"
    progress: bool = False
    on_error: str | None = None

    def error_policy(self) -> str:
        if self.on_error is not None:
            return self.on_error
        return "fail" if len(self.paths) == 1 and Path(self.paths[0]).is_file() else "skip"


@dataclass(frozen=True)
class ScoreSummary:
    """How many files were scored and how many could not be (on rank 0; zeros on the others)."""

    scored: int = 0
    failed: int = 0

    def line(self) -> str:
        return f"{self.scored} image(s) scored, {self.failed} could not be read"


def print_error(text: str) -> None:
    print(text, file=sys.stderr)


def score(config: ScoreConfig, echo: Echo = print, echo_error: Echo = print_error) -> ScoreSummary:
    """``echo`` gets one line per image, in input order: path, score, label (tab-separated, or a
    JSON object with ``as_json``). Files stream in batches, so memory stays flat for any number.
    Under torchrun each rank scores every N-th batch and rank 0 echoes all, in input order.

    An unreadable file ("skip") gets its one-line error, ``FILE: problem``, in its place: through
    ``echo`` as ``{"path": ..., "error": ...}`` with ``as_json``, else through ``echo_error``
    prefixed "gonomaly: error: ". With "fail", the first one raises its GonomalyError."""
    from tqdm.auto import tqdm

    from gonomaly.data.images import collect_image_paths
    from gonomaly.detector import ReconstructionDetector

    with distributed.session(config.device) as world:
        detector = ReconstructionDetector.load(config.run_dir).to(config.device)
        files = collect_image_paths(list(config.paths))
        workers = config.workers
        if workers is None:
            workers = 2 if len(files) >= 1000 else 0
        mine = distributed.round_robin(files, config.batch_size, world)
        batches = _stream(config, detector, mine, workers)
        show_bar = config.progress and len(files) >= 1000
        scored = failed = 0
        with tqdm(total=len(files), unit="img", disable=not show_bar, desc="score") as bar:
            lines_out = partial(tqdm.write, file=sys.stdout) if show_bar else echo
            errors_out = partial(tqdm.write, file=sys.stderr) if show_bar else echo_error
            write = {False: lines_out, True: lines_out if config.as_json else errors_out}  # by is_error
            for lines in distributed.merge_rounds(batches, len(files), config.batch_size, world):
                for is_error, group in itertools.groupby(lines, key=lambda line: line[1]):
                    texts = [text for text, _ in group]
                    write[is_error]("\n".join(texts))
                    failed += len(texts) if is_error else 0
                    scored += 0 if is_error else len(texts)
                bar.update(len(lines))
    return ScoreSummary(scored, failed)


def _stream(config: ScoreConfig, detector, files: list[Path], workers: int) -> Iterator[list[tuple[str, bool]]]:
    """Per batch of this rank's files, each file's output line and whether it is an error."""
    from gonomaly.data.streaming import stream_batches, stream_with_errors

    read = _reader(config, detector)
    if config.error_policy() == "skip":
        batches = stream_with_errors(files, read, config.batch_size, workers)
    else:
        batches = ((chunk, images, [""] * len(chunk))
                   for chunk, images in stream_batches(files, read, config.batch_size, workers))
    return _lines_per_batch(config, detector, batches)


def _reader(config: ScoreConfig, detector) -> Callable[[Path], object]:
    """The function that decodes one file into the model's image shape (or raises its error)."""
    from gonomaly.image_scoring import image_reader, read_checked

    return partial(read_checked, image_shape=detector.image_shape_, max_pixels=config.max_pixels,
                   read=image_reader(config.run_dir, config.resize))


def _lines_per_batch(config: ScoreConfig, detector, batches: Iterator) -> Iterator[list[tuple[str, bool]]]:
    import numpy as np

    from gonomaly.image_scoring import FailedImage, combine, failure

    for chunk, images, messages in batches:
        readable = [path for path, message in zip(chunk, messages) if not message]
        scores = detector.score_samples(images) if readable else np.empty(0)
        if config.overlay_dir is not None and readable:  # each rank writes the overlays of its own images
            from gonomaly.report.overlays import write_overlays

            write_overlays(detector, images, readable, config.overlay_dir)
        rows = iter(images if readable else ())
        decoded = [failure(str(path), message) if message else next(rows) for path, message in zip(chunk, messages)]
        lines = []
        for item in combine([str(path) for path in chunk], decoded, scores, detector.threshold_):
            failed = isinstance(item, FailedImage)
            if config.as_json:
                lines.append((json.dumps(item.to_json("path")), failed))
            elif failed:
                lines.append((f"gonomaly: error: {item.error}", True))
            else:
                lines.append((f"{item.name}\t{item.score:.6g}\t{item.decision}", False))
        yield lines
