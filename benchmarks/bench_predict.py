"""End-to-end latency and throughput of POST /predict under gunicorn on loopback.

    python benchmarks/bench_predict.py [--model-dir model] [--configs 2x2,1x2] [--requests 200]
                                       [--concurrency 1,2,4] [--env TF_NUM_INTRAOP_THREADS=1]

For each gunicorn configuration WORKERSxTHREADS it starts `gunicorn -c gunicorn.conf.py "app:create_app()"`
on a free port, and reports: seconds until /readyz first answers 200 and until every worker has served a
request; RSS of the master and of each worker; p50/p95 of client-measured latency and of the server's own
`timing_ms` (infer, total) for sequential requests of a 580x420 8-bit TIFF (the scanner's frame size) with
the default include; then requests/s and latency with N concurrent keep-alive clients. Every loop is bounded
by a request count and by --max-seconds. Prints JSON; docs/performance.md records the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.artifact import MODEL_DIR  # noqa: E402
from tests.conftest import phantom  # noqa: E402

BOUNDARY = "benchboundary7f3a"


def multipart_tiff() -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, phantom(420, 580))
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="f.tif"\r\n'
            "Content-Type: image/tiff\r\n\r\n"
        ).encode()
        + buffer.getvalue()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return round(int(match.group(1)) / 1024, 1) if match else float("nan")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


class Client:
    """One keep-alive connection; `post` returns (seconds, server timing_ms, worker pid header-less)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> int:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def post(self, body: bytes) -> tuple[float, dict]:
        start = time.perf_counter()
        self.connection.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        response = self.connection.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        return elapsed, json.loads(payload)["timing_ms"]


def percentiles(values: list[float]) -> dict:
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2)}


def wait_ready(port: int, server: subprocess.Popen, started: float, max_seconds: float) -> float:
    """Seconds from start until /readyz first answers 200 (a worker has loaded and warmed the model)."""
    while time.monotonic() - started < max_seconds:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            if Client(port).get("/readyz") == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready within {max_seconds} s")


def wait_all_workers(port: int, workers: int, access_log: Path, started: float, max_seconds: float) -> float:
    """Seconds from start until every worker has answered /readyz with 200 (fresh connections spread out)."""
    while time.monotonic() - started < max_seconds:
        lines = access_log.read_text().splitlines() if access_log.exists() else []
        if len({line.split()[0] for line in lines if line.endswith("/readyz 200")}) >= workers:
            return time.monotonic() - started
        with contextlib.suppress(OSError):
            Client(port).get("/readyz")
        time.sleep(0.02)
    raise RuntimeError(f"not every worker ready within {max_seconds} s")


def sequential(port: int, body: bytes, count: int, max_seconds: float) -> dict:
    client = Client(port)
    latencies, infer, total = [], [], []
    deadline = time.monotonic() + max_seconds
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        elapsed, timing = client.post(body)
        latencies.append(elapsed * 1000)
        infer.append(timing["infer"])
        total.append(timing["total"])
    return {
        "requests": len(latencies),
        "client_ms": percentiles(latencies),
        "server_infer_ms": percentiles(infer),
        "server_total_ms": percentiles(total),
    }


def run_clients(client, clients: int) -> float:
    """Run `client` in `clients` threads at once; the wall-clock seconds until the last one returns."""
    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def concurrent(port: int, body: bytes, clients: int, count: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    remaining = [count]
    deadline = time.monotonic() + max_seconds

    def run() -> None:
        client = Client(port)
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            try:
                elapsed, _ = client.post(body)
            except (OSError, RuntimeError) as exc:
                with lock:
                    errors.append(str(exc))
                client = Client(port)
                continue
            with lock:
                latencies.append(elapsed * 1000)

    wall = run_clients(run, clients)
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "requests_per_s": round(len(latencies) / wall, 1),
        "client_ms": percentiles(latencies or [0.0]),
    }


def bench_config(args, workers: int, threads: int, body: bytes) -> dict:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "NERVE_MODEL_DIR": str(args.model_dir),
        "NERVE_WORKERS": str(workers),
        "NERVE_THREADS": str(threads),
        "NERVE_SECRET_KEY": "bench",
    }
    env.update(dict(item.split("=", 1) for item in args.env))
    access_log = Path(f"/tmp/bench_predict_access_{port}.log")
    # The access log names the worker pid that answered, which tells when every worker is serving.
    env["GUNICORN_CMD_ARGS"] = f"--access-logfile {access_log} --access-logformat '%(p)s %(U)s %(s)s'"
    server = start_gunicorn(env)
    started = time.monotonic()
    try:
        ready_s = wait_ready(port, server, started, args.max_seconds)
        all_ready_s = wait_all_workers(port, workers, access_log, started, args.max_seconds)
        result = {
            "workers": workers,
            "threads": threads,
            "ready_s": round(ready_s, 2),
            "all_workers_ready_s": round(all_ready_s, 2),
            "rss_mb": {"master": rss_mb(server.pid), "workers": [rss_mb(p) for p in children(server.pid)]},
            "sequential": sequential(port, body, args.requests, args.max_seconds),
            "concurrent": [concurrent(port, body, c, args.requests, args.max_seconds) for c in args.concurrency],
        }
        result["rss_mb"]["workers_after"] = [rss_mb(p) for p in children(server.pid)]
        return result
    finally:
        access_log.unlink(missing_ok=True)
        stop_server(server)


def start_gunicorn(env: dict[str, str]) -> subprocess.Popen:
    """The service as the container starts it, in its own process group (stop_server ends the whole group)."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    return subprocess.Popen(
        [str(gunicorn), "-c", "gunicorn.conf.py", "app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_launcher(env: dict[str, str]) -> subprocess.Popen:
    """The container's entry command (nginx in front of gunicorn), in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to gunicorn's process group, SIGKILL if it has not stopped within 40 s."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--configs", default="2x2", help="comma list of WORKERSxTHREADS")
    parser.add_argument("--requests", type=int, default=200, help="per measurement (bounded)")
    parser.add_argument("--concurrency", default="1,2,4", help="comma list of concurrent client counts")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="cap on each loop and on start-up")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server, repeatable")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    body = multipart_tiff()
    results = []
    for config in args.configs.split(","):
        workers, threads = (int(n) for n in config.lower().split("x"))
        results.append(bench_config(args, workers, threads, body))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "model_dir": str(args.model_dir),
                "cpus": os.cpu_count(),
                "env": args.env,
                "load_average": os.getloadavg(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
