"""The container's entry command (`python -m deploy.serve`, also `make run`): nginx in front of gunicorn.

gunicorn's gthread workers give every connection a thread while its request arrives, so a few clients that
trickle headers or a body hold all of them and the service stops answering (docs/reliability.md, "Slow
clients"). nginx reads whole requests on its event loop, in memory, and passes only complete ones to
gunicorn, which listens on a unix socket in a private directory that only this user can enter.

This launcher renders deploy/nginx.conf.template from the environment (PORT, NERVE_MAX_UPLOAD_BYTES,
NERVE_TIMEOUT, NERVE_HTTPS, FORWARDED_ALLOW_IPS), starts gunicorn (gunicorn.conf.py as always, bound to the
socket, its workers' metrics in the private directory) and, once the socket exists, nginx on 0.0.0.0:$PORT.
It exits when either dies, stopping the other, so that the container host restarts the whole. SIGTERM (docker
stop, Kubernetes, Cloud Run) or SIGINT stops in order: nginx first (it stops listening and finishes the
requests in progress, for at most NGINX_SHUTDOWN_TIMEOUT_S), then gunicorn (its graceful_timeout), so no
request already received is cut.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("nginx.conf.template")

#: app/config.py's default body limit (tests/deploy/test_proxy.py checks they agree): both layers read
#: NERVE_MAX_UPLOAD_BYTES, so they refuse the same bodies.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: gunicorn.conf.py's default worker timeout (NERVE_TIMEOUT). nginx waits for an answer a little longer, so
#: that gunicorn's timeout, which ends the stuck worker, comes first.
DEFAULT_WORKER_TIMEOUT_S = 120
UPSTREAM_TIMEOUT_MARGIN_S = 10
#: Requests in progress at SIGTERM may run for the app's whole request budget (NERVE_REQUEST_TIMEOUT's default,
#: 30 s: a long loop takes several seconds), so nginx waits that long for them; gunicorn, stopped after it, then
#: has none in flight and exits at once, inside the 40 s docs/deploy.md's hosts allow for a stop.
NGINX_SHUTDOWN_TIMEOUT_S = 30
GUNICORN_STOP_WITHIN_S = 32
#: gunicorn binds its socket before its workers load the model; this bounds a start that never binds.
SOCKET_WITHIN_S = 60
#: gunicorn's own request checks relaxed to nginx's, so that gunicorn never refuses what nginx let through (its
#: refusals are HTML; nginx's and the app's are the service's JSON): limits above nginx's (8 KiB request line and
#: header lines, at most 32 KiB of headers, plus the forwarding addresses nginx appends), and any method nginx
#: parsed (upper-case letters, `_`, `-`), which the app answers with 405 JSON. Only here: gunicorn alone keeps its
#: own, tighter defaults.
GUNICORN_CHECKS = [
    "--limit-request-line",
    "8190",
    "--limit-request-fields",
    "32768",
    "--limit-request-field_size",
    "16384",
    "--permit-unconventional-http-method",
]
#: gunicorn's default access-log line with the client address nginx forwards in place of the socket's (empty).
GUNICORN_ACCESS_LOG_FORMAT = '%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
#: gunicorn's own default for FORWARDED_ALLOW_IPS.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"
#: app/security.py's STRICT_TRANSPORT_SECURITY (tests/deploy/test_proxy.py checks they agree).
STRICT_TRANSPORT_SECURITY = "max-age=31536000; includeSubDomains"
POLL_S = 0.2


def find_nginx() -> str | None:
    """The nginx binary: on PATH, or in /usr/sbin (Debian's place, often missing from a user's PATH)."""
    return shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or int(raw) == 0:
        raise SystemExit(f"deploy.serve: {name}={raw!r} must be a whole number above 0")
    return int(raw)


def _trusted_proxies(environ: Mapping[str, str]) -> list[str]:
    """nginx `geo` lines for FORWARDED_ALLOW_IPS: addresses or networks, or `*` for every peer."""
    raw = environ.get("FORWARDED_ALLOW_IPS", "").strip() or DEFAULT_FORWARDED_ALLOW_IPS
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if "*" in entries:
        return ["default 1;"]
    lines = ["default 0;"]
    for entry in entries:
        try:
            lines.append(f"{ipaddress.ip_network(entry, strict=False)} 1;")
        except ValueError:
            raise SystemExit(f"deploy.serve: FORWARDED_ALLOW_IPS: {entry!r} is not an address or network") from None
    return lines


def render_nginx_config(environ: Mapping[str, str], runtime_dir: Path) -> str:
    """The nginx configuration for this environment: every @NAME@ marker of the template filled in."""
    port = _positive_int(environ, "PORT", 8000)
    if port > 65535:
        raise SystemExit(f"deploy.serve: PORT={port} is not a port")
    max_body = _positive_int(environ, "NERVE_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)
    worker_timeout = _positive_int(environ, "NERVE_TIMEOUT", DEFAULT_WORKER_TIMEOUT_S)
    https = environ.get("NERVE_HTTPS", "").strip() == "1"
    values = {
        "RUNTIME_DIR": str(runtime_dir),
        "PORT": str(port),
        "MAX_BODY_BYTES": str(max_body),
        # One byte more than the largest body: a body at the limit fits the buffer, so it is never spooled.
        "BODY_BUFFER_BYTES": str(max_body + 1),
        "UPSTREAM_TIMEOUT": str(worker_timeout + UPSTREAM_TIMEOUT_MARGIN_S),
        "SHUTDOWN_TIMEOUT": str(NGINX_SHUTDOWN_TIMEOUT_S),
        "TRUSTED_PROXIES": "\n".join(" " * 8 + line for line in _trusted_proxies(environ)),
        # HSTS on nginx's own answers exactly when the app sends it on its own (NERVE_HTTPS, app/security.py).
        "HSTS": f'{" " * 12}add_header Strict-Transport-Security "{STRICT_TRANSPORT_SECURITY}" always;'
        if https
        else "",
        # As root (a developer's or CI's machine; never the image) nginx would switch its workers to an
        # unprivileged user, who could not enter the private directory that holds gunicorn's socket.
        "USER": "user root;" if os.geteuid() == 0 else "",
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


def gunicorn_command(socket_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "gunicorn.conf.py",
        "--bind",
        f"unix:{socket_path}",
        *GUNICORN_CHECKS,
        "--access-logformat",
        GUNICORN_ACCESS_LOG_FORMAT,
        "app:create_app()",
    ]


def nginx_command(nginx: str, runtime_dir: Path) -> list[str]:
    # -e: nginx opens its compiled-in error log (under /var/log, not writable here) before reading the config.
    return [nginx, "-p", str(runtime_dir), "-c", str(runtime_dir / "nginx.conf"), "-e", "stderr"]


def _say(message: str) -> None:
    print(f"deploy.serve: {message}", file=sys.stderr, flush=True)


def _runtime_parent() -> str | None:
    """/dev/shm where there is one (memory, as gunicorn's worker_tmp_dir): nothing in there is meant for disk."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def _stop(process: subprocess.Popen, sig: signal.Signals, within_s: float) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        _say(f"pid {process.pid} did not stop within {within_s} s of {sig.name}; killing it")
        process.kill()
        process.wait()


def serve(environ: Mapping[str, str]) -> int:
    """nginx in front of gunicorn until a signal or until either dies; returns the exit status for the host."""
    nginx = find_nginx()
    if nginx is None:
        _say(
            "nginx is not installed (Debian: apt-get install nginx). For local use only, without protection "
            "against slow clients: gunicorn -c gunicorn.conf.py 'app:create_app()'"
        )
        return 2
    stop_signals: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop_signals.append(signal.Signals(signum)))

    runtime_dir = Path(tempfile.mkdtemp(prefix="nerve-serve-", dir=_runtime_parent()))
    try:
        socket_path = runtime_dir / "gunicorn.sock"
        (runtime_dir / "nginx.conf").write_text(render_nginx_config(environ, runtime_dir))
        # The workers' metrics (app/metrics.py) in the private directory too: fresh at each start, gone at exit.
        metrics_dir = runtime_dir / "metrics"
        metrics_dir.mkdir(mode=0o700)
        gunicorn_env = {**environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        children = {"gunicorn": subprocess.Popen(gunicorn_command(socket_path), cwd=ROOT, env=gunicorn_env)}
        deadline = time.monotonic() + SOCKET_WITHIN_S
        while not socket_path.exists() and not stop_signals and children["gunicorn"].poll() is None:
            if time.monotonic() > deadline:
                _say(f"gunicorn did not bind {socket_path} within {SOCKET_WITHIN_S} s")
                break
            time.sleep(POLL_S)
        else:
            if not stop_signals and children["gunicorn"].poll() is None:
                children["nginx"] = subprocess.Popen(
                    nginx_command(nginx, runtime_dir), cwd=runtime_dir, env=dict(environ)
                )
        while not stop_signals and len(children) == 2 and all(p.poll() is None for p in children.values()):
            time.sleep(POLL_S)
        died = [name for name, process in children.items() if process.poll() is not None]
        if "nginx" in children:
            _stop(children["nginx"], signal.SIGQUIT, NGINX_SHUTDOWN_TIMEOUT_S + 2)
        _stop(children["gunicorn"], signal.SIGTERM, GUNICORN_STOP_WITHIN_S)
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
    if not stop_signals:
        _say(f"{' and '.join(died) or 'start-up'} failed; stopped the rest")
        return 1
    unclean = {name: process.returncode for name, process in children.items() if process.returncode != 0}
    if unclean:
        _say(f"stopped on {stop_signals[0].name}, not cleanly: exit status {unclean}")
    return 1 if unclean else 0


if __name__ == "__main__":
    sys.exit(serve(os.environ))
