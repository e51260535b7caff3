"""Gunicorn settings, read by the container's entry command (deploy/serve.py, the Dockerfile's CMD and `make run`).

There gunicorn sits behind nginx, which reads every request whole before passing it on (a slow client would
otherwise hold a request thread for as long as it trickles): serve.py binds it to a private unix socket and
raises its request-size limits above nginx's. Run alone, `gunicorn -c gunicorn.conf.py "app:create_app()"`
binds 0.0.0.0:$PORT itself with its default limits (the tests and benchmarks that measure gunicorn do).

Workers and threads were chosen by measurement on the 2-core target (docs/performance.md) and can be
overridden with NERVE_WORKERS / NERVE_THREADS: two workers, so that one can die without the service going
silent, and two threads, so that a worker decodes or encodes one request while another is in the network.
The network runs through onnxruntime when the model's ONNX export is there (the container), else through
TensorFlow, limited to its share of the cores (one each on 2 cores: this nearly doubled throughput against
TensorFlow's default of every core per process). Neither runtime survives fork() reliably, so the app is
never preloaded in the master: each worker loads the model after it is forked (tests/app/test_gunicorn.py
checks the master stays free of TensorFlow).

Metrics (app/metrics.py) are kept per worker in PROMETHEUS_MULTIPROC_DIR and summed at each scrape; the hooks
at the end prepare that directory and tell the client when a worker has died.
"""

import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path

# deploy/serve.py overrides this with --bind unix:...; nginx then listens on $PORT.
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("NERVE_WORKERS", "2"))
threads = int(os.environ.get("NERVE_THREADS", "2"))
worker_class = "gthread"
preload_app = False
# Start-up (TensorFlow import, model load, XLA warm-up) happens before a worker's first heartbeat, so the
# timeout must cover it on a busy machine. It is the hard backstop for a worker whose main loop stops (a hang
# holding the GIL): a gthread worker keeps heartbeating while a request thread works, so one slow request is
# ended by the app's own NERVE_REQUEST_TIMEOUT (app/deadline.py), which answers 503 JSON, not by this.
timeout = int(os.environ.get("NERVE_TIMEOUT", "120"))
graceful_timeout = 30
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
errorlog = "-"

# Seen by the workers, which inherit the master's environment and import TensorFlow after the fork.
# onnxruntime gets every core in each worker: its threads do not spin while idle (model/onnx_serving.py), so
# one request uses both cores and concurrent ones share them (measured: p50 17 ms against 27 ms with one
# thread per worker, the same throughput; docs/performance.md). TensorFlow, whose threads do spin, is
# limited to its share.
os.environ.setdefault("NERVE_INFERENCE_THREADS", str(os.cpu_count() or 1))
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # its C++ start-up chatter is noise

# Page forms carry CSRF tokens signed with the secret key, and any worker may receive the POST, so all
# workers must share one key: without NERVE_SECRET_KEY, make one here, before the fork.
if not os.environ.get("NERVE_SECRET_KEY"):
    os.environ["NERVE_SECRET_KEY"] = secrets.token_hex(32)
    logging.getLogger("gunicorn.error").warning(
        "NERVE_SECRET_KEY is not set: using a random key shared by this server's workers; page forms stop "
        "working across a restart. Set it in production."
    )


# Prometheus' multiprocess mode (app/metrics.py): each worker writes its values to files in this directory,
# and a scrape sums them. The directory must be set before a worker imports prometheus_client, and must start
# empty: files left by an earlier server would be summed in as if its workers were still here.


def on_starting(server) -> None:
    """Once, in the master before any worker: deploy/serve.py gives a fresh private directory, an operator may
    give one; without either (tests, gunicorn run alone) make one, removed again at exit."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    server.own_metrics_dir = None if given else tempfile.mkdtemp(prefix="nerve-metrics-", dir=worker_tmp_dir)
    path = Path(given or server.own_metrics_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def child_exit(server, worker) -> None:
    """A dead worker's live gauges (its readiness, the model it served) leave the sums; its counters stay."""
    # Imported here, never at the top: the master must not import prometheus_client before on_starting has set
    # the directory, or the workers it forks would inherit a client that keeps values in memory only.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if server.own_metrics_dir:
        shutil.rmtree(server.own_metrics_dir, ignore_errors=True)
