"""Load test of `gonomaly serve`: K concurrent HTTP clients sending real MVTec bottle images.

Usage: python benchmarks/bench_serve.py [--run-dir RUN] [--seconds 15] [--clients 8,32]
                                        [--epochs 1] [--image-size 64]

Without --run-dir it trains a small GON (width 32, one epoch) on the bottle training images at
64x64 RGB. It then serves the run twice with `gonomaly serve` in a subprocess on a free loopback port, with dynamic
batching on (--max-batch 64 --max-wait-ms 5) and off (--max-batch 1 --max-wait-ms 0), and for
each number of clients prints the throughput (images/s), the p50/p95/p99 latency and the error
count; an error is any answer other than 200 with the detector's own score and label (the score
to 1e-4 relative: a batch of another size may take other float32 kernels, and a fused density
fitted on a few dozen validation images amplifies that noise to up to 6e-5 relative). With
batching on it adds the mixed flood: 10% bad inputs (not an image, truncated, empty, over the
pixel limit, NaN TIFF; the wrong size for a run that does not resize) among the good ones;
every bad one must get a 4xx and every good one its score. The in-process `score_samples`
throughput of the same images is the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import _setup  # noqa: F401  (src/ on the path, the GONOMALY_DATA default)
import httpx
import numpy as np
from PIL import Image

from gonomaly.image_scoring import trained_on_resized_images

ROOT = Path(__file__).resolve().parents[1]
BOTTLE = Path(os.environ["GONOMALY_DATA"]) / "mvtec_ad" / "bottle"
BAD_FRACTION = 0.1
CONFIGURATIONS = {"batching on": {"max_batch": 64, "max_wait_ms": 5},
                  "batching off": {"max_batch": 1, "max_wait_ms": 0}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="Serve this run folder instead of training one.")
    parser.add_argument("--seconds", type=float, default=15.0, help="Duration of each load run.")
    parser.add_argument("--clients", default="8,32", help="Numbers of concurrent clients, comma-separated.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=64)
    return parser.parse_args()


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((image.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def bad_bodies(good: bytes, size: int, resized: bool) -> list[bytes]:
    """One body of each bad kind: not an image, truncated PNG, empty, over the server's pixel
    limit, NaN TIFF, and (for a run that takes images at the model's size, not resized) the
    wrong size."""
    nan = np.full((size, size), np.nan, dtype=np.float32)
    tiff = io.BytesIO()
    Image.fromarray(nan).save(tiff, format="TIFF")
    huge = io.BytesIO()  # 20 megapixels of black: a few kB as PNG, refused from its header
    Image.new("L", (5000, 4000)).save(huge, format="PNG")
    bodies = [b"this is not an image", good[: len(good) // 2], b"", huge.getvalue(), tiff.getvalue()]
    return bodies if resized else [*bodies, png(np.zeros((3, size + 8, size + 8)))]


def prepare(args: argparse.Namespace, workdir: Path):
    """The run folder, the loaded detector and the test images (N, 3, S, S) as sent (PNG)."""
    from gonomaly import GONDetector, ReconstructionDetector
    from gonomaly.data import load_data

    bundle = load_data(f"mvtec:{BOTTLE}", image_size=args.image_size)
    run_dir = args.run_dir
    if run_dir is None:
        run_dir = workdir / "run"
        start = time.perf_counter()
        GONDetector(epochs=args.epochs, batch_size=32, width=32, seed=0).fit(bundle.train).save(run_dir)
        print(f"trained a GON on {len(bundle.train)} bottle images in {time.perf_counter() - start:.0f} s")
    detector = ReconstructionDetector.load(run_dir)
    bodies = [png(image) for image in bundle.test.images]
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)), dtype=np.float32).transpose(2, 0, 1) / 255
                       for b in bodies])  # exactly what the server decodes
    return run_dir, detector, images, bodies


def in_process_throughput(detector, images: np.ndarray, seconds: float) -> float:
    """Images/s of ``score_samples`` over the same images, in batches of 64, for ``seconds``."""
    scored, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for first in range(0, len(images), 64):
            scored += len(detector.score_samples(images[first:first + 64]))
    return scored / (time.perf_counter() - start)


def start_server(run_dir: Path, port: int, max_batch: int, max_wait_ms: float) -> subprocess.Popen:
    command = [sys.executable, "-m", "gonomaly", "-q", "serve", str(run_dir), "--port", str(port),
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    good: int = 0
    errors: int = 0
    bad_refused: int = 0
    seconds: float = 0.0

    def row(self, label: str) -> str:
        ms = np.percentile(self.latencies, [50, 95, 99]) * 1000 if self.latencies else [float("nan")] * 3
        rate = self.good / self.seconds if self.seconds else 0.0
        extra = f"  bad refused {self.bad_refused}" if self.bad_refused else ""
        return (f"{label:<34} {rate:8.1f} img/s  p50 {ms[0]:6.1f}  p95 {ms[1]:6.1f}  p99 {ms[2]:6.1f} ms  "
                f"good {self.good:6d}  errors {self.errors}{extra}")


SCORE_RTOL = 1e-4  # float32 noise between batch compositions, through the score (see above)


def same_answer(answer: dict, expected: tuple[float, int]) -> bool:
    """The detector's own (score, label), the score up to batch-composition float noise."""
    score, label = expected
    return abs(answer["score"] - score) <= SCORE_RTOL * max(1.0, abs(score)) and answer["label"] == label


async def client_loop(session, bodies, expected, bad, stop_at: float, result: LoadResult, seed: int) -> None:
    chooser = random.Random(seed)
    while time.perf_counter() < stop_at:
        is_bad = bool(bad) and chooser.random() < BAD_FRACTION
        index = chooser.randrange(len(bad) if is_bad else len(bodies))
        start = time.perf_counter()
        try:
            response = await session.post("/v1/score", content=(bad if is_bad else bodies)[index])
        except httpx.HTTPError:
            result.errors += 1
            continue
        if is_bad:
            ok = 400 <= response.status_code < 500 and "error" in response.json()
            result.bad_refused += ok
        else:
            result.latencies.append(time.perf_counter() - start)
            ok = (response.status_code == 200
                  and same_answer(response.json()["images"][0], expected[index]))
            result.good += ok
        result.errors += not ok


async def load(url: str, clients: int, seconds: float, bodies, expected, bad=()) -> LoadResult:
    result = LoadResult()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(session, bodies, expected, list(bad), start + seconds, result, seed)
                               for seed in range(clients)))
        result.seconds = time.perf_counter() - start
    return result


def run_configuration(name, options, run_dir, clients, seconds, bodies, expected, bad) -> None:
    port = free_port()
    server = start_server(run_dir, port, **options)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(load(url, clients[0], min(2.0, seconds), bodies, expected))  # warm-up
        for count in clients:
            print(asyncio.run(load(url, count, seconds, bodies, expected)).row(f"{name}, {count} clients"),
                  flush=True)
        if bad:
            flood = asyncio.run(load(url, clients[-1], seconds, bodies, expected, bad))
            print(flood.row(f"{name}, {clients[-1]} clients, 10% bad"), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    args = parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as workdir:
        run_dir, detector, images, bodies = prepare(args, Path(workdir))
        scores = detector.score_samples(images)
        expected = list(zip(scores.tolist(), detector.predict(images).tolist()))
        size = images.shape[-1]
        resized = trained_on_resized_images(run_dir)  # then any size is valid: the server resizes
        print(f"{len(bodies)} bottle test images, {images.shape[1]}x{size}x{size}, "
              f"{sum(map(len, bodies)) // len(bodies)} bytes each as PNG; {os.cpu_count()} CPUs")
        ceiling = in_process_throughput(detector, images, args.seconds / 3)
        print(f"{'in-process score_samples':<34} {ceiling:8.1f} img/s  (the ceiling)", flush=True)
        for name, options in CONFIGURATIONS.items():
            bad = bad_bodies(bodies[0], size, resized) if name == "batching on" else ()
            run_configuration(name, options, run_dir, clients, args.seconds, bodies, expected, bad)


if __name__ == "__main__":
    main()
