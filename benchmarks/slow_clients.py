"""Slow clients against the shipped server: does it keep answering while many connections trickle in?

    python benchmarks/slow_clients.py [--slow-clients 50] [--rounds 100] [--pause 0.15] [--byte-every 1.0]
                                      [--baseline-rounds 3] [--baseline-timeout 5] [--model-dir model]

Starts the shipped configuration as the container does (`python -m deploy.serve`: nginx in front of gunicorn)
and, beside it, gunicorn alone (`gunicorn -c gunicorn.conf.py`, the entry command before the proxy), each on a
free loopback port. Measures in rounds one GET /healthz and one POST /predict of a 580 x 420 TIFF (the p50 of
each, client-measured): first unloaded, the two servers taking turns so that both see the same background
load (which also gives the proxy's own cost); then the shipped one while --slow-clients connections trickle
one byte every --byte-every seconds, half of them a request's headers and half a body that never completes. A
slow connection the server closes (a timeout) is opened again at once, as an attacker would, and counted. The
target is the issue's: every request answered, at <= 2x its unloaded p50. Then the same slow clients against
gunicorn alone, with a short --baseline-timeout and few rounds, to show the need: its request threads are held
by the slow clients. Prints JSON and exits 1 when the shipped configuration misses the target.
docs/reliability.md ("Slow clients") records the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
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
    start_gunicorn,
    start_launcher,
    stop_server,
    wait_ready,
)

from model.artifact import MODEL_DIR  # noqa: E402

TARGET_RATIO = 2.0
#: What a header trickler sends, a byte at a time, after its request line: a header that never ends.
HEADER_DRIP = b"X-Slow: " + b"a" * 1_000_000
#: A body trickler's declared length: far more than it will ever send.
BODY_LENGTH = 1_000_000


class SlowClients(threading.Thread):
    """Connections that each send one byte every `byte_every` seconds; one reopened when the server closes it."""

    def __init__(self, port: int, count: int, byte_every: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.byte_every = byte_every
        self.kinds = ["headers" if i % 2 == 0 else "body" for i in range(count)]
        self.sockets: list[socket.socket | None] = [None] * count
        self.sent = [0] * count
        self.reopened = {"headers": 0, "body": 0}
        self.failed_opens = 0
        self.stop = threading.Event()

    def _open(self, index: int) -> None:
        """A new connection with the request started: the request line, and for a body the whole header."""
        head = b"POST /predict HTTP/1.1\r\nHost: bench\r\n"
        if self.kinds[index] == "body":
            head += f"Content-Type: image/tiff\r\nContent-Length: {BODY_LENGTH}\r\n\r\n".encode()
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(head)
        except OSError:
            self.failed_opens += 1
            self.sockets[index] = None
            return
        self.sockets[index] = sock
        self.sent[index] = 0

    def _drip(self, index: int) -> None:
        sock = self.sockets[index]
        if sock is None:
            self._open(index)
            return
        byte = HEADER_DRIP[self.sent[index] : self.sent[index] + 1] if self.kinds[index] == "headers" else b"\0"
        try:
            sock.sendall(byte)
            self.sent[index] += 1
        except OSError:  # the server closed it: a timeout
            sock.close()
            self.reopened[self.kinds[index]] += 1
            self._open(index)

    def open_all(self) -> None:
        for index in range(len(self.sockets)):
            self._open(index)

    def run(self) -> None:
        while not self.stop.wait(self.byte_every):
            for index in range(len(self.sockets)):
                self._drip(index)

    def close(self) -> dict:
        self.stop.set()
        self.join(timeout=10)
        for sock in self.sockets:
            if sock is not None:
                sock.close()
        return {
            "connections": len(self.sockets),
            "open_at_end": sum(s is not None for s in self.sockets),
            "reopened_after_server_closed": self.reopened,
            "failed_opens": self.failed_opens,
        }


def p50(values: list[float]) -> float | None:
    return round(float(np.percentile(values, 50)), 2) if values else None


def measure(ports: list[int], body: bytes, rounds: int, pause: float, timeout: float) -> list[dict]:
    """`rounds` x (GET /healthz, POST /predict) to each server in turn, one keep-alive connection each (taking
    turns puts the servers under the same background load); per server the p50 ms of each and the failures."""
    requests = {
        "healthz": ("GET", "/healthz", None, {}),
        "predict": ("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}),
    }
    latencies = [{name: [] for name in requests} for _ in ports]
    failures = [{name: [] for name in requests} for _ in ports]
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=timeout) for port in ports]
    for _ in range(rounds):
        for index, port in enumerate(ports):
            for name, (method, path, payload, headers) in requests.items():
                start = time.perf_counter()
                try:
                    connections[index].request(method, path, payload, headers)
                    response = connections[index].getresponse()
                    response.read()
                except (OSError, http.client.HTTPException) as exc:
                    failures[index][name].append(f"{type(exc).__name__}: {exc}")
                    connections[index].close()
                    connections[index] = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                    continue
                if response.status == 200:
                    latencies[index][name].append((time.perf_counter() - start) * 1000)
                else:
                    failures[index][name].append(f"HTTP {response.status}")
        time.sleep(pause)
    for connection in connections:
        connection.close()
    return [
        {
            name: {
                "answered": len(latencies[i][name]),
                "failed": len(failures[i][name]),
                "p50_ms": p50(latencies[i][name]),
            }
            | ({"failure_examples": failures[i][name][:3]} if failures[i][name] else {})
            for name in requests
        }
        for i in range(len(ports))
    ]


def ratios(unloaded: dict, loaded: dict) -> dict:
    return {
        name: round(loaded[name]["p50_ms"] / unloaded[name]["p50_ms"], 2) if loaded[name]["p50_ms"] else None
        for name in unloaded
    }


def passed(loaded: dict, ratio: dict) -> bool:
    """Every request answered, each kind at <= TARGET_RATIO x its unloaded p50."""
    return all(
        loaded[name]["failed"] == 0 and ratio[name] is not None and ratio[name] <= TARGET_RATIO for name in ratio
    )


def nginx_rss_mb(launcher: int) -> float:
    """nginx's master and worker together (the launcher's other child is gunicorn's master)."""
    total = 0.0
    for pid in children(launcher):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "nginx":
                total += rss_mb(pid) + sum(rss_mb(worker) for worker in children(pid))
    return round(total, 1)


def under_slow_clients(port: int, args, body: bytes, unloaded: dict, rounds: int, timeout: float, sample=None) -> dict:
    """The rounds again with the slow clients connected; their figures and the ratios to `unloaded`."""
    slow = SlowClients(port, args.slow_clients, args.byte_every)
    slow.open_all()
    slow.start()
    time.sleep(2 * args.byte_every)  # every slow client has its request started and a byte or two in
    loaded = measure([port], body, rounds, args.pause, timeout=timeout)[0]
    sampled = sample() if sample else {}
    result = {"unloaded": unloaded, "with_slow_clients": loaded, "slow_clients": slow.close(), **sampled}
    result["ratio_to_unloaded_p50"] = ratios(unloaded, loaded)
    result["passed"] = passed(loaded, result["ratio_to_unloaded_p50"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--slow-clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100, help="healthz + predict pairs per measurement")
    parser.add_argument("--pause", type=float, default=0.15, help="seconds between rounds")
    parser.add_argument("--byte-every", type=float, default=1.0, help="seconds between a slow client's bytes")
    parser.add_argument("--baseline-rounds", type=int, default=3, help="rounds against gunicorn alone, loaded")
    parser.add_argument("--baseline-timeout", type=float, default=5.0, help="seconds per request, gunicorn alone")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="cap on each server's start-up")
    args = parser.parse_args()
    body = multipart_tiff()
    env = {**os.environ, "NERVE_MODEL_DIR": str(args.model_dir), "NERVE_SECRET_KEY": "bench"}

    shipped_port, alone_port = free_port(), free_port()
    launcher = start_launcher({**env, "PORT": str(shipped_port)})
    alone = start_gunicorn({**env, "PORT": str(alone_port)})
    try:
        wait_ready(shipped_port, launcher, time.monotonic(), args.max_seconds)
        wait_ready(alone_port, alone, time.monotonic(), args.max_seconds)
        unloaded = measure([shipped_port, alone_port], body, args.rounds, args.pause, timeout=60)
        shipped = under_slow_clients(
            shipped_port,
            args,
            body,
            unloaded[0],
            args.rounds,
            timeout=60,
            sample=lambda: {"nginx_rss_mb": nginx_rss_mb(launcher.pid)},
        )
        baseline = under_slow_clients(
            alone_port, args, body, unloaded[1], args.baseline_rounds, timeout=args.baseline_timeout
        )
    finally:
        stop_server(launcher)
        stop_server(alone)

    print(
        json.dumps(
            {
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "target": f"every request answered at <= {TARGET_RATIO}x its unloaded p50",
                "settings": vars(args) | {"model_dir": str(args.model_dir)},
                "shipped_nginx_and_gunicorn": shipped,
                "gunicorn_alone": baseline,
                "unloaded_p50_nginx_over_gunicorn_alone": ratios(baseline["unloaded"], shipped["unloaded"]),
            },
            indent=2,
        )
    )
    return 0 if shipped["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
