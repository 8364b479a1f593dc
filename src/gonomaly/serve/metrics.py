"""The service's Prometheus metrics (``GET /metrics``), kept in a registry of their own so that
several apps in one process (tests) never share counts. With ``--workers N`` each worker
process counts its own requests: scrape each, or sum them in the monitoring system."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """Requests by endpoint and status, errors by kind, request latency, batch sizes, images
    scored, and the images waiting for a batch."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("gonomaly_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=self.registry)
        self.errors = Counter("gonomaly_errors", "Refused requests and unreadable images by kind of problem",
                              ["kind"], registry=self.registry)
        self.latency = Histogram("gonomaly_request_latency_seconds", "Request latency by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("gonomaly_batch_size_images", "Images per scored batch",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.images = Counter("gonomaly_images_scored", "Images scored", registry=self.registry)
        self.queued = Gauge("gonomaly_queued_images", "Images waiting for a batch", registry=self.registry)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def count_error(self, kind: str, count: int = 1) -> None:
        self.errors.labels(kind=kind).inc(count)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)
        self.images.inc(size)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
