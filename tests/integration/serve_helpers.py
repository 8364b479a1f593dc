"""Helpers for the ``gonomaly serve`` tests: a small real run folder, the service in a thread on
a free loopback port, and image files in every format the tests send."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

N_TRAIN = 300


def train_run_folder(directory: Path) -> tuple[Path, np.ndarray]:
    """A GON trained for one epoch on 300 real MNIST digits, saved in ``directory``; returns the
    folder and 40 real test digits, float32 (40, 1, 28, 28)."""
    from gonomaly import GONDetector
    from gonomaly.data import load_data

    bundle = load_data(f"mnist:n_train={N_TRAIN},n_test=40")
    GONDetector(epochs=1, batch_size=32, seed=0).fit(bundle.train).save(directory)
    return directory, bundle.test.images


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` on a free loopback port in a daemon thread (lifespan included)."""

    def __init__(self, app):
        import uvicorn

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


def png_bytes(image: np.ndarray, mode: str | None = None, bits: int = 8) -> bytes:
    """An image (C, H, W) in [0, 1] as PNG; ``bits`` 16 writes 16-bit greyscale, ``mode`` "P" a
    palette image."""
    pixels = image.transpose(1, 2, 0)
    if bits == 16:
        picture = Image.fromarray((pixels[..., 0] * 65535).round().astype(np.uint16))
    else:
        squeezed = pixels[..., 0] if pixels.shape[2] == 1 else pixels
        picture = Image.fromarray((squeezed * 255).round().astype(np.uint8))
    if mode is not None:
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def nan_tiff_bytes(height: int, width: int) -> bytes:
    """A float TIFF (Pillow mode F) of the given size with one NaN pixel."""
    pixels = np.zeros((height, width), dtype=np.float32)
    pixels[height // 2, width // 2] = np.nan
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="TIFF")
    return buffer.getvalue()


def corrupted(digit: np.ndarray) -> np.ndarray:
    """The digit (1, 28, 28) with a bright 16x16 square pasted over its middle: a defect."""
    damaged = digit.copy()
    damaged[:, 6:22, 6:22] = 1.0
    return damaged
