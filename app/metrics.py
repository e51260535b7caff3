"""Prometheus metrics at GET /metrics and one JSON access-log line per request: a Flask extension.

`init_app(app)` hooks every request (before/after_request) and serves /metrics, guarded by the API token like
the API. Under gunicorn each worker is a process with its own counters, so the client runs in multiprocess mode:
gunicorn.conf.py (or deploy/serve.py, which starts it) points PROMETHEUS_MULTIPROC_DIR at a fresh private
directory before the workers fork, each worker writes its values to memory-mapped files there, a scrape answered
by any worker sums them all, and gunicorn's child_exit hook drops a dead worker's live gauges. Without that
variable (tests, one process) the values live in this module's registry.

The answer functions (app/api.py, app/live.py) hand the results they answered to `note_answers`, which keeps
only their timings and `reliable` field: stage times come from the `timing_ms` every answer already carries
(encode = total - decode - infer), so they are the very figures clients see. NERVE_METRICS=0 turns the metrics
off (no /metrics, nothing recorded: benchmarks/bench_metrics.py measures the cost against it); request ids
and the access log stay.

The access log ("nerve.access", to stderr) names the route template, never the path, and holds no image
content, filename or DICOM tag: only the id, method, route, status, times, frame count and model version.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter as Tally
from collections.abc import Mapping
from dataclasses import dataclass
from time import perf_counter

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.config import SWITCH_VALUES, ConfigError
from app.model_service import EXTENSION as MODEL_SERVICE
from app.model_service import ModelService
from app.request_ids import request_id
from app.security import token_required

#: The key of the app's Metrics in `app.extensions`.
EXTENSION = "metrics"
#: Chosen when the module is imported, as prometheus_client chooses how it stores values.
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
#: Label values are bounded: an unconventional method (nginx passes any upper-case word on) is "other", a path
#: that matched no route is "unmatched", so no client can make new series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
KINDS = ("single", "batch", "loop")
STAGES = ("decode", "infer", "encode")

#: Not the default registry: that one also carries process and platform collectors, which make no sense summed
#: over workers.
REGISTRY = CollectorRegistry()
# Buckets around what a 580 x 420 frame takes on 2 cores (docs/performance.md) and what a loop or a full batch
# takes; decode starts lower, a frame's TIFF decode being well under a millisecond.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UPLOAD_BUCKETS = tuple(1024 * 4**power for power in range(10))  # 1 KiB to 256 MiB

REQUESTS = Counter(
    "nerve_http_requests",
    "Requests answered by the app, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "nerve_http_request_duration_seconds",
    "Time in the app from the request reaching it to its answer, by route template.",
    ["route"],
    buckets=REQUEST_BUCKETS,
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "nerve_stage_duration_seconds",
    "Per answered frame, the time of each stage from its timing_ms (encode = total - decode - infer), by kind.",
    ["kind", "stage"],
    buckets=STAGE_BUCKETS,
    registry=REGISTRY,
)
FRAMES = Counter(
    "nerve_frames",
    "Frames answered with a result, by kind and by the answer's `reliable` field (unknown: no estimator).",
    ["kind", "reliable"],
    registry=REGISTRY,
)
UPLOAD_BYTES = Histogram(
    "nerve_upload_bytes",
    "Request bodies by their Content-Length, by route template.",
    ["route"],
    buckets=UPLOAD_BUCKETS,
    registry=REGISTRY,
)
MODEL_INFO = Gauge(
    "nerve_model_info",
    "1 for the model the workers serve, named by its labels.",
    ["name", "version", "runtime"],
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
WORKER_READY = Gauge(
    "nerve_worker_ready",
    "1 when the worker's model is loaded and warmed up; one series per live worker (pid) under gunicorn.",
    multiprocess_mode="liveall",
    registry=REGISTRY,
)

access_log = logging.getLogger("nerve.access")


def settings_from_env(environ: Mapping[str, str] = os.environ) -> dict:
    value = environ.get("NERVE_METRICS", "").strip() or "1"
    if value not in SWITCH_VALUES:
        raise ConfigError(f"NERVE_METRICS={value!r} must be one of {', '.join(SWITCH_VALUES)}")
    return {"METRICS": value == "1"}


@dataclass(frozen=True)
class Answered:
    """What a request answered, as much as the metrics and the log need: its kind and, per frame, the stage
    times in ms and the `reliable` label."""

    kind: str
    stage_ms: list[tuple[float, float, float]]
    reliable: list[str]
    model_version: str | None


def note_answers(kind: str, results: list[dict]) -> None:
    """Record the frames this request answered (`kind`: single, batch or loop); a batch's error entries are
    not frames answered."""
    answered = [result for result in results if "error" not in result]
    stage_ms = []
    for result in answered:
        timing = result["timing_ms"]
        # Rounding to the microsecond can make the difference a hair below zero.
        encode = max(timing["total"] - timing["decode"] - timing["infer"], 0.0)
        stage_ms.append((timing["decode"], timing["infer"], encode))
    g.answered = Answered(
        kind=kind,
        stage_ms=stage_ms,
        reliable=[str(result["reliable"]).lower() if "reliable" in result else "unknown" for result in answered],
        model_version=answered[0]["model"]["version"] if answered else None,
    )


class Metrics:
    """The app's request hooks; records metrics only when `enabled`."""

    def __init__(self, service: ModelService, enabled: bool) -> None:
        self.service = service
        self.enabled = enabled
        self.ready_reported = False

    def report_readiness(self) -> None:
        """Set this worker's readiness and the model's identity; a no-op once the model has loaded (with
        NERVE_MODEL_LOADING=background that happens after start-up, seen at the next request or scrape)."""
        if self.ready_reported:
            return
        if not self.service.ready:
            WORKER_READY.set(0)
            return
        segmenter = self.service.segmenter
        MODEL_INFO.labels(segmenter.info["name"], segmenter.info["version"], segmenter.runtime).set(1)
        WORKER_READY.set(1)
        self.ready_reported = True

    def start(self) -> None:
        g.started = perf_counter()

    def finish(self, response: Response) -> Response:
        seconds = perf_counter() - g.started
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        answered: Answered | None = g.get("answered")
        if self.enabled:
            self.record(route, response.status_code, seconds, answered)
        log_request(route, response.status_code, seconds, answered)
        return response

    def record(self, route: str, status: int, seconds: float, answered: Answered | None) -> None:
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(route, method, str(status)).inc()
        REQUEST_SECONDS.labels(route).observe(seconds)
        if request.content_length is not None:
            UPLOAD_BYTES.labels(route).observe(request.content_length)
        if answered is not None:
            histograms = [STAGE_SECONDS.labels(answered.kind, stage) for stage in STAGES]
            for times in answered.stage_ms:
                for histogram, ms in zip(histograms, times, strict=True):
                    histogram.observe(ms / 1000.0)
            for reliable, count in Tally(answered.reliable).items():
                FRAMES.labels(answered.kind, reliable).inc(count)
        self.report_readiness()


def log_request(route: str, status: int, seconds: float, answered: Answered | None) -> None:
    stage_ms = None
    if answered is not None and answered.stage_ms:
        stage_ms = {stage: round(sum(times[i] for times in answered.stage_ms), 3) for i, stage in enumerate(STAGES)}
    line = {
        "request_id": request_id(),
        "method": request.method,
        "route": None if route == UNMATCHED else route,
        "status": status,
        "total_ms": round(seconds * 1000.0, 3),
        "stage_ms": stage_ms,
        "kind": answered.kind if answered else None,
        "frames": len(answered.stage_ms) if answered else 0,
        "model_version": answered.model_version if answered else None,
    }
    access_log.info(json.dumps(line))


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@token_required
def scrape() -> Response:
    current_app.extensions[EXTENSION].report_readiness()
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _configure_access_log() -> None:
    """One JSON object per line on stderr, where gunicorn's own error log goes too; not propagated, so it is
    written once whatever the root logger has."""
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False


def init_app(app: Flask) -> Metrics:
    """Hook the app's requests (call before any other before_request hook, so that a request refused by one,
    e.g. the CSRF check, is timed and logged too) and serve /metrics when app.config["METRICS"] is on."""
    metrics = Metrics(app.extensions[MODEL_SERVICE], app.config["METRICS"])
    _configure_access_log()
    app.before_request(metrics.start)
    app.after_request(metrics.finish)
    if metrics.enabled:
        metrics.report_readiness()
        app.register_blueprint(bp)
    app.extensions[EXTENSION] = metrics
    return metrics
