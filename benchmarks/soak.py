"""Soak test: many requests from concurrent clients against the service on loopback, worker memory sampled.

    python benchmarks/soak.py [--requests 10000] [--clients 4] [--warmup 500] [--bad-every 10]
                              [--max-seconds 900] [--model-dir model] [--entry launcher|gunicorn]

Starts the shipped configuration, `python -m deploy.serve` (nginx in front of gunicorn, 2 workers x 2 threads
by default; `--entry gunicorn` starts gunicorn alone), on a free loopback port, warms it up, then sends
--requests POST /predict requests from --clients keep-alive clients: a 580 x 420 TIFF (200 expected), and
every --bad-every-th a truncated one (400 expected), so the error path is soaked too. An error is any other
answer or a failed connection. A sampler reads each worker's RSS from /proc once a second. Reports JSON:
requests, errors, req/s, client latency p50/p95/p99, and per worker the RSS after warm-up, its peak, at the
end and the growth after warm-up; exits 1 when there was an error, a worker was replaced or RSS grew more than
--max-growth (10%). Every loop is bounded by the request count and by --max-seconds. docs/reliability.md
records the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import (  # noqa: E402
    BOUNDARY,
    children,
    free_port,
    multipart_tiff,
    rss_mb,
    run_clients,
    start_gunicorn,
    start_launcher,
    stop_server,
    wait_all_workers,
    wait_ready,
)

from model.artifact import MODEL_DIR  # noqa: E402


def truncated_body(good: bytes) -> bytes:
    """The same multipart request with the TIFF cut short inside its part (a 400 unreadable_image)."""
    head, _, rest = good.partition(b"\r\n\r\n")
    image = rest[: -len(f"\r\n--{BOUNDARY}--\r\n")]
    return head + b"\r\n\r\n" + image[: len(image) // 3] + f"\r\n--{BOUNDARY}--\r\n".encode()


class Sampler(threading.Thread):
    """Worker RSS once a second, keyed by pid (a replaced worker shows up as a new pid)."""

    def __init__(self, master: int) -> None:
        super().__init__(daemon=True)
        self.master = master
        self.samples: dict[int, list[float]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            for pid in children(self.master):
                with contextlib.suppress(OSError):  # exited between listing and reading
                    self.samples.setdefault(pid, []).append(rss_mb(pid))


def gunicorn_master(pid: int) -> int:
    """gunicorn's master: `pid` itself, or the launcher's child running gunicorn."""
    if "gunicorn" in Path(f"/proc/{pid}/cmdline").read_text():
        return pid
    return next(c for c in children(pid) if "gunicorn" in Path(f"/proc/{c}/cmdline").read_text())


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def soak(port: int, good: bytes, bad: bytes, count: int, clients: int, bad_every: int, max_seconds: float) -> dict:
    """`count` requests shared by `clients` threads; returns counts and latency percentiles (ms)."""
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    errors: list[str] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                index = next_index[0]
                if index >= count:
                    return
                next_index[0] += 1
            is_bad = bad_every > 0 and index % bad_every == bad_every - 1
            body, expected = (bad, 400) if is_bad else (good, 200)
            start = time.perf_counter()
            try:
                connection.request(
                    "POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
                )
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(f"request {index}: {type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            elapsed_ms = (time.perf_counter() - start) * 1000
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status != expected or not payload.startswith(b"{"):
                    errors.append(f"request {index}: HTTP {response.status} (expected {expected}): {payload[:120]!r}")
                elif not is_bad:
                    latencies.append(elapsed_ms)

    wall = run_clients(client, clients)
    sent = sum(statuses.values()) + sum("HTTP" not in e for e in errors)
    return {
        "requests": sent,
        "errors": len(errors),
        "error_examples": errors[:5],
        "statuses": statuses,
        "seconds": round(wall, 1),
        "requests_per_s": round(sent / wall, 1),
        "ok_latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": percentile(latencies, 100),
        },
    }


def memory_report(samples: dict[int, list[float]], warm: dict[int, float], max_growth: float) -> dict:
    workers = {}
    for pid, series in samples.items():
        if pid not in warm or not series:
            continue
        growth = (series[-1] - warm[pid]) / warm[pid]
        workers[str(pid)] = {
            "after_warmup_mb": warm[pid],
            "peak_mb": max(series),
            "end_mb": series[-1],
            "growth_after_warmup_pct": round(100 * growth, 2),
        }
    worst = max((w["growth_after_warmup_pct"] for w in workers.values()), default=float("nan"))
    return {
        "workers": workers,
        "max_growth_pct": worst,
        "limit_pct": round(100 * max_growth, 1),
        "replaced_workers": sorted(str(pid) for pid in samples if pid not in warm),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500, help="requests before the RSS baseline")
    parser.add_argument("--bad-every", type=int, default=10, help="every Nth request is a damaged TIFF; 0: none")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="cap on start-up and on each phase")
    parser.add_argument("--max-growth", type=float, default=0.10, help="largest RSS growth after warm-up")
    parser.add_argument("--entry", choices=("launcher", "gunicorn"), default="launcher", help="what to start")
    args = parser.parse_args()

    good = multipart_tiff()
    bad = truncated_body(good)
    port = free_port()
    access_log = Path(f"/tmp/soak_access_{port}.log")
    env = {
        **os.environ,
        "PORT": str(port),
        "NERVE_MODEL_DIR": str(args.model_dir),
        "NERVE_SECRET_KEY": "soak",
        "GUNICORN_CMD_ARGS": f"--access-logfile {access_log} --access-logformat '%(p)s %(U)s %(s)s'",
    }
    server = start_launcher(env) if args.entry == "launcher" else start_gunicorn(env)
    started = time.monotonic()
    try:
        workers = int(os.environ.get("NERVE_WORKERS", "2"))
        wait_ready(port, server, started, args.max_seconds)
        if args.entry == "gunicorn":
            wait_all_workers(port, workers, access_log, started, args.max_seconds)
        # Behind the launcher gunicorn logs in its own format; its workers load the model before they accept
        # a connection, so the warm-up's requests reach each one as soon as it is ready, and it lasts far
        # longer than a load.
        access_log.unlink(missing_ok=True)  # 10,000 lines are not worth keeping
        warmup = soak(port, good, bad, args.warmup, args.clients, args.bad_every, args.max_seconds)
        master = gunicorn_master(server.pid)
        warm = {pid: rss_mb(pid) for pid in children(master)}
        sampler = Sampler(master)
        sampler.start()
        result = soak(port, good, bad, args.requests, args.clients, args.bad_every, args.max_seconds)
        sampler.stop.set()
        sampler.join()
        memory = memory_report(sampler.samples, warm, args.max_growth)
        memory["master_mb"] = rss_mb(master)
    finally:
        stop_server(server)
        access_log.unlink(missing_ok=True)
    report = {
        "entry": args.entry,
        "clients": args.clients,
        "bad_every": args.bad_every,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "warmup": {"requests": warmup["requests"], "errors": warmup["errors"]},
        "soak": result,
        "rss": memory,
    }
    print(json.dumps(report, indent=2))
    passed = (
        result["errors"] == 0
        and result["requests"] == args.requests
        and not memory["replaced_workers"]
        and memory["max_growth_pct"] <= 100 * args.max_growth
    )
    print(f"soak: {'passed' if passed else 'FAILED'}", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
