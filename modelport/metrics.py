"""The one Prometheus registry: every figure modelport exports on ``GET /metrics``.

Workers never touch it: they send their figures (predict and load seconds) back as
plain data in their replies, and the front records them here, so one process owns
every metric and no multi-process collector is needed.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # the *_created series double the exposition and nobody graphs them
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

# Sub-millisecond to a minute: served models answer in ~0.1 ms to seconds.
_LATENCY = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)
_SLOW = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter(
    "modelport_requests",
    "Requests answered, by model, protocol (v2, v1, mlflow, grpc, other) and status code.",
    ["model", "protocol", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "modelport_request_duration_seconds",
    "Time from the request's arrival to its response, by model and protocol.",
    ["model", "protocol"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
QUEUE_SECONDS = Histogram(
    "modelport_queue_duration_seconds",
    "Time a prediction waited for a free batch dispatcher.",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
BATCH_WAIT_SECONDS = Histogram(
    "modelport_batch_wait_duration_seconds",
    "Time a batch waited for more requests to join it (--max-batch-wait-ms).",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
PREDICT_SECONDS = Histogram(
    "modelport_predict_duration_seconds",
    "Time the model's predict took inside the worker, per model call.",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "modelport_batch_size",
    "Requests merged into one model call.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "modelport_inflight_requests",
    "Inference requests received and not yet answered.",
    ["model"],
    registry=REGISTRY,
)
WORKERS_READY = Gauge(
    "modelport_workers_ready",
    "Workers that have loaded the model and can take requests.",
    ["model"],
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "modelport_worker_restarts",
    "Workers replaced, by cause (exit, timeout, unresponsive).",
    ["model", "cause"],
    registry=REGISTRY,
)
MODEL_LOAD_SECONDS = Histogram(
    "modelport_model_load_duration_seconds",
    "Time a worker took to load the model (each start and restart).",
    ["model"],
    buckets=_SLOW,
    registry=REGISTRY,
)
FETCH_BYTES = Counter(
    "modelport_fetch_bytes",
    "Bytes downloaded to fetch models, by URI scheme (0 when served from the cache).",
    ["scheme"],
    registry=REGISTRY,
)
FETCH_SECONDS = Histogram(
    "modelport_fetch_duration_seconds",
    "Time spent resolving and fetching a model URI, by scheme.",
    ["scheme"],
    buckets=_SLOW,
    registry=REGISTRY,
)
ENV_BUILD_SECONDS = Histogram(
    "modelport_environment_build_duration_seconds",
    "Time spent building or unpacking a model environment, by kind (uv, tarball).",
    ["kind"],
    buckets=_SLOW,
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
