"""Prometheus metrics of one server (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_POW2 = tuple(float(2**i) for i in range(0, 17))


class Metrics:
    """Every metric is prefixed ``embedlab_``; counters get Prometheus's ``_total`` suffix."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "embedlab_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "embedlab_request_seconds", "HTTP request latency by route", ["route"], buckets=_LATENCY, registry=r
        )
        self.queue_seconds = Histogram(
            "embedlab_queue_seconds", "time a request waited before its first batch ran", buckets=_LATENCY, registry=r
        )
        self.forward_seconds = Histogram(
            "embedlab_forward_seconds", "time of one forward pass", buckets=_LATENCY, registry=r
        )
        self.batch_items = Histogram("embedlab_batch_items", "inputs per forward pass", buckets=_POW2[:13], registry=r)
        self.batch_tokens = Histogram(
            "embedlab_batch_tokens", "padded tokens (rows x longest) per forward pass", buckets=_POW2, registry=r
        )
        self.batch_requests = Histogram(
            "embedlab_batch_requests",
            "distinct requests whose inputs share a forward pass",
            buckets=_POW2[:11],
            registry=r,
        )
        self.tokens = Counter("embedlab_tokens", "input tokens embedded", registry=r)
        self.queued_tokens = Gauge(
            "embedlab_queue_tokens", "tokens admitted and not yet answered (queued or running)", registry=r
        )
        self.queued_inputs = Gauge("embedlab_queue_inputs", "inputs waiting for a batch", registry=r)
        self.rejected = Counter("embedlab_rejected", "requests refused with 429 (queue full)", registry=r)
        self.cancelled = Counter("embedlab_cancelled", "requests dropped because the client went away", registry=r)
        self.timeouts = Counter("embedlab_timeouts", "requests answered 503 after --request-timeout", registry=r)
        self.skipped_inputs = Counter(
            "embedlab_skipped_inputs", "queued inputs of cancelled requests the batcher dropped", registry=r
        )
        self.worker_alive = Gauge("embedlab_worker_alive", "1 while the model worker thread runs", registry=r)
        self.throughput = Gauge(
            "embedlab_admission_tokens_per_second",
            "the worker throughput admission control assumes (measured under load)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics"]
