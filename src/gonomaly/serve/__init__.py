"""``gonomaly serve``: an HTTP scoring service with dynamic batching, Prometheus metrics and a
web page. ``serve`` runs it; ``create_app`` builds the ASGI app (for tests and embedding)."""

from gonomaly.serve.app import ServeSettings, create_app
from gonomaly.serve.runner import serve

__all__ = ["ServeSettings", "create_app", "serve"]
