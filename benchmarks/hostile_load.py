"""Every hostile case against the real server, two at a time, with the worker's memory and each case's time.

    python benchmarks/hostile_load.py [--timeout 30] [--max-seconds 900]

Starts `gunicorn -c gunicorn.conf.py "app:create_app()"` with one worker of two threads (so that both of its
threads are busy with the same case), then sends every case of tests/app/test_hostile_inputs.py's table that
needs no settings of its own (those that do are listed as skipped: a running server cannot change them), plus
the largest valid requests (MAXIMAL: an RGB image at the pixel limit, a loop at the loop pixel limit), two
copies at once, built exactly as the test client sends them (chunked cases chunked). A sampler reads, 50
times a second, the memory of the worker plus every process under it (the decoding helpers and their
forkserver): its proportional set size (PSS, shared pages counted once) and its RSS summed (shared pages once
per process: an upper bound). Reports per case the statuses, the slowest answer and both peaks, and checks
the issue's bounds: every answer as expected, no case slower than the request budget (NERVE_REQUEST_TIMEOUT,
with a second's slack), the RSS sum under 1.5 GB; exits 1 otherwise. Figures go to docs/reliability.md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import ROOT, children, free_port, rss_mb, start_gunicorn, stop_server, wait_ready  # noqa: E402

sys.path.insert(0, str(ROOT))
from werkzeug.test import EnvironBuilder  # noqa: E402

from tests.app.test_hostile_inputs import CASES, Case  # noqa: E402

MEMORY_LIMIT_MB = 1536


def maximal_cases() -> list[Case]:
    """The largest requests the default limits accept (valid files; content-free so they fit the body limit)."""
    import numpy as np
    from PIL import Image

    from tests.hostile import pil_encode

    side = 4096
    rgb = np.zeros((side, side, 3), np.uint8)
    rgb[::7, :, 0] = 200  # stripes: something to decode, little to compress
    frames = [Image.new("L", (1024, 1024), 40 + k) for k in range(64)]  # 64 MP: the loop pixel limit
    loop = pil_encode(frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    rgb_png = pil_encode(Image.fromarray(rgb), "PNG")
    return [
        Case("maximal_rgb_png_4096", lambda: {"data": {"image": (io.BytesIO(rgb_png), "f.png")}}, 200, None, ""),
        Case(
            "maximal_loop_64x1024x1024",
            lambda: {"data": {"image": (io.BytesIO(loop), "l.tif"), "frames": "all"}},
            200,
            None,
            "",
        ),
    ]


def pss_mb(pid: int) -> float:
    """Proportional set size: a page shared by n processes counts 1/n in each, so that summing a forked
    family does not count the pages it shares (its imported libraries) once per process, as RSS would."""
    match = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), flags=re.M)
    return round(int(match.group(1)) / 1024, 1) if match else float("nan")


def tree_mb(pid: int, measure=pss_mb) -> float:
    """Memory of a process and all its descendants, summed (PSS by default)."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            total += measure(current)
            stack.extend(children(current))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return round(total, 1)


class Sampler(threading.Thread):
    """The peaks of the worker family's PSS and of its RSS summed (which counts shared pages once per process,
    an upper bound) since the last `reset`."""

    def __init__(self, worker: int) -> None:
        super().__init__(daemon=True)
        self.worker, self.peak, self.peak_rss, self.running = worker, 0.0, 0.0, True

    def reset(self) -> None:
        self.peak, self.peak_rss = tree_mb(self.worker), tree_mb(self.worker, rss_mb)

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, tree_mb(self.worker))
            self.peak_rss = max(self.peak_rss, tree_mb(self.worker, rss_mb))
            time.sleep(0.02)


def wire_request(case: Case) -> tuple[str, str, dict[str, str], object, bool]:
    """(method, path, headers, body, chunked) for a case, built by Werkzeug as the test client builds it."""
    kwargs = case.request()
    method = kwargs.pop("method", "POST")
    overrides = kwargs.pop("environ_overrides", {})
    builder = EnvironBuilder(path=case.path, method=method, **kwargs)
    environ = builder.get_environ()
    body = environ["wsgi.input"].read()
    headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    chunked = bool(overrides.get("wsgi.input_terminated")) or headers.get("Transfer-Encoding") == "chunked"
    headers.pop("Transfer-Encoding", None)
    headers.pop("Content-Length", None)
    return method, case.path, headers, body, chunked


def send(port: int, request: tuple, timeout: float) -> tuple[int, float]:
    method, path, headers, body, chunked = request
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        if chunked:
            pieces = (body[i : i + 4096] for i in range(0, len(body), 4096))
            connection.request(method, path, body=pieces, headers=headers, encode_chunked=True)
        else:
            connection.request(method, path, body=body or None, headers=headers)
    except OSError:
        pass  # a server may answer (413) and close before the body is sent whole: read what it said
    try:
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except OSError:
        return 0, time.monotonic() - started
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=30.0, help="NERVE_REQUEST_TIMEOUT for the server")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="cap on start-up")
    args = parser.parse_args()
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "NERVE_WORKERS": "1",
        "NERVE_THREADS": "2",
        "NERVE_REQUEST_TIMEOUT": str(args.timeout),
    }
    server = start_gunicorn(env)
    try:
        wait_ready(port, server, time.monotonic(), args.max_seconds)
        [worker] = children(server.pid)
        sampler = Sampler(worker)
        sampler.start()
        rows, skipped, failures = [], [], []
        for case in [*CASES, *maximal_cases()]:
            if case.config:
                skipped.append(case.id)
                continue
            request = wire_request(case)
            sampler.reset()
            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(send, [port] * 2, [request] * 2, [args.timeout + 30] * 2))
            statuses = sorted({status for status, _ in answers})
            slowest = max(seconds for _, seconds in answers)
            row = {
                "case": case.id,
                "statuses": statuses,
                "slowest_s": round(slowest, 3),
                "peak_pss_mb": sampler.peak,
                "peak_rss_sum_mb": sampler.peak_rss,
            }
            rows.append(row)
            if statuses != [case.status] or slowest > args.timeout + 1 or sampler.peak_rss > MEMORY_LIMIT_MB:
                failures.append(row)
        sampler.running = False
        result = {
            "date": time.strftime("%Y-%m-%d"),
            "load_average": os.getloadavg(),
            "request_timeout_s": args.timeout,
            "cases": len(rows),
            "skipped_needing_own_settings": skipped,
            "slowest": max(rows, key=lambda r: r["slowest_s"]),
            "largest_peak": max(rows, key=lambda r: r["peak_rss_sum_mb"]),
            "worker_family_mb_at_end": tree_mb(worker),
            "failures": failures,
            "rows": rows,
        }
        print(json.dumps(result, indent=2))
        return 1 if failures else 0
    finally:
        stop_server(server)


if __name__ == "__main__":
    sys.exit(main())
