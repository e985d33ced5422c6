"""Prometheus metrics of one server (``GET /metrics``), with prometheus_client.

Each app has its own registry, so that several apps (tests) never share counts.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServeMetrics:
    """The server's counters, gauges and histograms (names start with ``transduce_``)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("transduce_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("transduce_request_seconds", "HTTP request latency, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_sentences = Histogram("transduce_batch_sentences", "Sentences per model batch",
                                         ["model"], buckets=SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("transduce_batch_requests", "Requests sharing one model batch",
                                        ["model"], buckets=SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram("transduce_batch_seconds", "Decoding time of one model batch",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.source_tokens = Counter("transduce_source_tokens", "Source tokens decoded", ["model"], registry=r)
        self.output_tokens = Counter("transduce_output_tokens", "Output tokens produced (best hypotheses)",
                                     ["model"], registry=r)
        self.tokens_per_second = Gauge("transduce_tokens_per_second",
                                       "Output tokens per second of the last model batch", ["model"], registry=r)
        self.queue_sentences = Gauge("transduce_queue_sentences", "Sentences waiting for a model batch",
                                     ["model"], registry=r)
        self.queue_requests = Gauge("transduce_queue_requests", "Requests with sentences waiting",
                                    ["model"], registry=r)
        self.tokens_in_flight = Gauge("transduce_tokens_in_flight",
                                      "Source tokens x beam admitted and not yet answered", ["model"], registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
