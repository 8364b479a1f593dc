"""``serve(run_dir, ...)``: what ``gonomaly serve`` runs. uvicorn serves the app; it finishes
the requests in flight on SIGTERM or SIGINT, then exits."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from gonomaly.errors import GonomalyError
from gonomaly.serve.app import DEFAULT_SERVE_MAX_PIXELS, SETTINGS_VARIABLE, ServeSettings, create_app

GRACEFUL_SHUTDOWN_S = 30  # the longest a SIGTERM waits for requests in flight


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """Refuses a non-loopback address without a token, in one line."""
    if not token and not is_loopback(host):
        raise GonomalyError(f"--host {host}: not a loopback address; set --token TOKEN to require bearer "
                            f"authentication from other machines (or bind to 127.0.0.1)")


def check_settings(settings: ServeSettings, workers: int) -> None:
    if settings.max_batch < 1 or settings.max_wait_ms < 0 or workers < 1:
        raise GonomalyError(f"--max-batch and --workers must be >= 1 and --max-wait-ms >= 0, got "
                            f"{settings.max_batch}, {workers} and {settings.max_wait_ms}")
    if not settings.max_body_mb > 0 or settings.max_pixels < 1:
        raise GonomalyError(f"--max-body-mb and --max-pixels must be positive, got {settings.max_body_mb} "
                            f"and {settings.max_pixels}")


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 64,
          max_wait_ms: float = 5.0, token: str | None = None, workers: int = 1, max_body_mb: float = 20.0,
          max_pixels: int = DEFAULT_SERVE_MAX_PIXELS, log_level: str = "info") -> None:
    """Serve the run folder ``run_dir`` over HTTP until SIGTERM or SIGINT.

    The folder is loaded and verified (hashes, shapes) before the port opens; with ``workers``
    > 1, uvicorn starts that many processes, each loading it again and batching on its own.
    Raises ``GonomalyError`` for a non-loopback ``host`` without ``token``, bad limits, or a
    broken run folder."""
    import uvicorn

    from gonomaly.detector import ReconstructionDetector

    check_bind(host, token)
    settings = ServeSettings(run_dir=str(Path(run_dir).resolve()), max_batch=max_batch, max_wait_ms=max_wait_ms,
                             token=token or None, max_body_mb=max_body_mb, max_pixels=max_pixels)
    check_settings(settings, workers)
    detector = ReconstructionDetector.load(settings.run_dir)
    options = {"host": host, "port": port, "log_level": log_level, "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S}
    if workers == 1:
        uvicorn.run(create_app(settings, detector), **options)
        return
    del detector  # each worker process loads its own
    os.environ[SETTINGS_VARIABLE] = settings.to_environment()
    uvicorn.run("gonomaly.serve.app:app_from_environment", factory=True, workers=workers, **options)
