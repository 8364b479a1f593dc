"""``gonomaly score``: stream image files through a saved detector, one line per image."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gonomaly import distributed
from gonomaly.workflow.config import Echo


@dataclass(frozen=True)
class ScoreConfig:
    """Score image files or folders of them with the detector saved in ``run_dir``.

    ``workers`` None: 2 decoding processes for 1,000 files or more, else 0. ``resize`` None:
    resize to the model's size when it was trained on mvtec or folder data. ``overlay_dir``:
    also write each image's anomaly-map overlay there. ``max_pixels``: refuse larger images
    from their header, before decoding them."""

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


def score(config: ScoreConfig, echo: Echo = print) -> None:
    """``echo`` gets one line per image, in input order: path, score, label (tab-separated, or a
    JSON object with ``as_json``). Files stream in batches, so memory stays flat for any number.
    Under torchrun each rank scores every N-th batch and rank 0 echoes all, in input order."""
    from tqdm.auto import tqdm

    from gonomaly.data.images import collect_image_paths
    from gonomaly.data.streaming import stream_batches
    from gonomaly.detector import ReconstructionDetector

    with distributed.session(config.device) as world:
        detector = ReconstructionDetector.load(config.run_dir).to(config.device)
        files = collect_image_paths(list(config.paths))
        workers = config.workers
        if workers is None:
            workers = 2 if len(files) >= 1000 else 0
        mine = distributed.round_robin(files, config.batch_size, world)
        batches = _lines_per_batch(config, detector, stream_batches(mine, _reader(config, detector),
                                                                    config.batch_size, workers))
        show_bar = config.progress and len(files) >= 1000
        with tqdm(total=len(files), unit="img", disable=not show_bar, desc="score") as bar:
            for lines in distributed.merge_rounds(batches, len(files), config.batch_size, world):
                if lines:  # empty on ranks other than 0
                    text = "\n".join(lines)
                    tqdm.write(text) if show_bar else echo(text)
                    bar.update(len(lines))


def _reader(config: ScoreConfig, detector):
    """The function that decodes one file into the model's image shape."""
    from gonomaly.data.images import read_image

    resize = config.resize
    if resize is None:
        from gonomaly.store import read_config

        data = read_config(config.run_dir).get("data")
        resize = isinstance(data, dict) and data.get("kind") in ("mvtec", "folder")
    if resize:
        from gonomaly.data.decode import read_resized

        return partial(read_resized, image_shape=detector.image_shape_, max_pixels=config.max_pixels)
    return partial(read_image, image_shape=detector.image_shape_, max_pixels=config.max_pixels)


def _lines_per_batch(config: ScoreConfig, detector, batches: Iterator) -> Iterator[list[str]]:
    for chunk, images in batches:
        scores = detector.score_samples(images)
        if config.overlay_dir is not None:  # each rank writes the overlays of its own images
            from gonomaly.report.overlays import write_overlays

            write_overlays(detector, images, chunk, config.overlay_dir)
        lines = []
        for path, value in zip(chunk, scores):
            label = int(value > detector.threshold_)
            if config.as_json:
                lines.append(json.dumps({"path": str(path), "score": float(value), "label": label}))
            else:
                lines.append(f"{path}\t{value:.6g}\t{'anomalous' if label else 'normal'}")
        yield lines
