"""GET /metrics (app/metrics.py): the text format parses, counters follow the requests answered (in this process,
and summed over two real gunicorn workers), stage times are the answers' own, the API token guards it, and
NERVE_METRICS=0 turns it off; gunicorn.conf.py prepares the multiprocess directory."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.config import ConfigError
from app.metrics import note_answers, settings_from_env
from tests.app.conftest import tiff_bytes
from tests.app.test_gunicorn import TOKEN, Server, worker_pids
from tests.conftest import ROOT, phantom
from tests.media import dicom_bytes, loop

FAMILIES = {
    "nerve_http_requests",
    "nerve_http_request_duration_seconds",
    "nerve_stage_duration_seconds",
    "nerve_frames",
    "nerve_upload_bytes",
    "nerve_model_info",
    "nerve_worker_ready",
}

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> tuple[set[str], Samples]:
    """(family names, {(sample name, labels): value}) of a scrape."""
    names, samples = set(), {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return names, samples


def value(samples: Samples, sample: str, **labels: str) -> float:
    return samples.get((sample, frozenset(labels.items())), 0.0)


def scrape(client, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))[1]


def test_the_text_format_parses_and_has_every_metric(client, phantom_tiff):
    client.post("/predict", data=phantom_tiff, content_type="image/tiff")
    names, samples = parse(client.get("/metrics").get_data(as_text=True))
    assert names >= FAMILIES
    assert value(samples, "nerve_worker_ready") == 1
    runtime = client.get("/readyz").get_json()["runtime"]
    assert value(samples, "nerve_model_info", name="unet-test", version="0.0.0-test", runtime=runtime) == 1


def test_counts_follow_the_requests_answered(client, phantom_tiff):
    before = scrape(client)
    single = client.post("/predict", data={"image": (io.BytesIO(phantom_tiff), "a.tif")})
    images = [(io.BytesIO(phantom_tiff), "a.tif"), (io.BytesIO(b""), "empty.tif"), (io.BytesIO(phantom_tiff), "b.tif")]
    batch = client.post("/predict/batch", data={"images": images})
    cine = client.post("/predict", data={"image": (io.BytesIO(dicom_bytes(loop(3))), "l.dcm"), "frames": "all"})
    refused = client.post("/predict", data=b"text", content_type="text/plain")
    client.get("/no/such/route")
    assert [r.status_code for r in (single, batch, cine, refused)] == [200, 200, 200, 415]
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "nerve_http_requests_total"
    assert delta(requests, route="/predict", method="POST", status="200") == 2
    assert delta(requests, route="/predict", method="POST", status="415") == 1
    assert delta(requests, route="/predict/batch", method="POST", status="200") == 1
    assert delta(requests, route="unmatched", method="GET", status="404") == 1
    # Frames answered: one single, two of the batch's three (one is an error entry), the loop's three.
    for kind, frames in (("single", 1), ("batch", 2), ("loop", 3)):
        assert delta("nerve_frames_total", kind=kind, reliable="unknown") == frames, kind
        for stage in ("decode", "infer", "encode"):
            assert delta("nerve_stage_duration_seconds_count", kind=kind, stage=stage) == frames, (kind, stage)
    assert delta("nerve_http_request_duration_seconds_count", route="/predict") == 3
    assert delta("nerve_upload_bytes_count", route="/predict") == 3
    uploads = [single, cine, refused]
    assert delta("nerve_upload_bytes_sum", route="/predict") == sum(r.request.content_length for r in uploads)


def test_stage_times_are_the_answers_own(client, phantom_tiff):
    before = scrape(client)
    timing = client.post("/predict", data=phantom_tiff, content_type="image/tiff").get_json()["timing_ms"]
    after = scrape(client)
    encode = timing["total"] - timing["decode"] - timing["infer"]
    for stage, ms in (("decode", timing["decode"]), ("infer", timing["infer"]), ("encode", encode)):
        labels = {"kind": "single", "stage": stage}
        observed = value(after, "nerve_stage_duration_seconds_sum", **labels) - value(
            before, "nerve_stage_duration_seconds_sum", **labels
        )
        assert observed == pytest.approx(ms / 1000.0, abs=1e-6), stage


def test_answers_are_counted_by_their_reliable_field(app):
    frame = {"timing_ms": {"decode": 1.0, "infer": 2.0, "total": 3.5}, "model": {"version": "9.9"}}
    results = [
        {**frame, "reliable": True},
        {**frame, "reliable": False},
        {**frame, "reliable": False},
        frame,  # a model without a quality estimator
        {"error": {"code": "empty_image", "message": "m"}},
    ]
    with app.test_request_context():
        from flask import g

        note_answers("batch", results)
        assert Counter(g.answered.reliable) == {"true": 1, "false": 2, "unknown": 1}
        assert g.answered.stage_ms == [(1.0, 2.0, 0.5)] * 4 and g.answered.model_version == "9.9"


def test_the_api_token_guards_metrics(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "API_TOKEN", "m3trics")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert scrape(client, Authorization="Bearer m3trics")


def test_nerve_metrics_0_turns_them_off(tiny_model_dir):
    assert settings_from_env({}) == {"METRICS": True} == settings_from_env({"NERVE_METRICS": "1"})
    assert settings_from_env({"NERVE_METRICS": "0"}) == {"METRICS": False}
    with pytest.raises(ConfigError, match="NERVE_METRICS"):
        settings_from_env({"NERVE_METRICS": "off"})
    app = create_app({"MODEL_DIR": tiny_model_dir, "SECRET_KEY": "k", "TESTING": True, "METRICS": False})
    client = app.test_client()
    response = client.get("/metrics")
    assert response.status_code == 404 and response.headers["X-Request-ID"]


GUNICORN_CONF_HOOKS = """
import json, os, sys
from pathlib import Path
from types import SimpleNamespace
import runpy
conf = runpy.run_path("gunicorn.conf.py")
server = SimpleNamespace()
conf["on_starting"](server)
path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
seen = {"dir": str(path), "mode": path.stat().st_mode & 0o777, "files": sorted(p.name for p in path.iterdir())}
conf["on_exit"](server)
seen["exists_after_exit"] = path.exists()
print(json.dumps(seen))
"""


def run_conf_hooks(**env: str) -> dict:
    """Run gunicorn.conf.py's start and exit hooks in a subprocess (they change the environment)."""
    clean = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", GUNICORN_CONF_HOOKS],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_gunicorn_conf_makes_a_private_directory_or_cleans_the_one_given(tmp_path):
    made = run_conf_hooks()
    assert made["mode"] == 0o700 and made["files"] == [] and not made["exists_after_exit"]
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_999.db").write_bytes(b"stale")
    (given / "keep.txt").write_text("not ours")
    seen = run_conf_hooks(PROMETHEUS_MULTIPROC_DIR=str(given))
    assert seen["dir"] == str(given) and seen["files"] == ["keep.txt"] and seen["exists_after_exit"]


# --- two real gunicorn workers ------------------------------------------------------------------------------------


def predicting_pids(server: Server) -> Counter:
    """How many /predict requests each worker has answered, from the access log (`pid path status`)."""
    lines = server.access_log.read_text().splitlines() if server.access_log.exists() else []
    return Counter(line.split()[0] for line in lines if " /predict " in f"{line} ")


def metrics_dirs(pids: list[int]) -> set[Path]:
    """The multiprocess directories the workers have their value files in (from their memory maps)."""
    found = set()
    for pid in pids:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            match = re.search(r"(/\S+)/(counter|histogram|gauge_\w+)_\d+\.db$", line)
            if match:
                found.add(Path(match.group(1)))
    return found


def test_counters_sum_over_two_real_gunicorn_workers(tiny_model_dir, tmp_path):
    server = Server(tiny_model_dir, tmp_path / "gunicorn.log")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    tiff = tiff_bytes(phantom(420, 580))
    try:
        server.wait(lambda: server.call("/readyz")[0] == 200 and len(server.serving_pids()) == 2, "both workers ready")
        workers = worker_pids(server.process.pid)
        assert server.call("/metrics")[0] == 401, "the token guards it under gunicorn too"

        # Rounds of 4 concurrent requests until both workers have answered some (bounded).
        def predict(_: int) -> int:
            return server.call("/predict", tiff, {**auth, "Content-Type": "image/tiff"})[0]

        sent = 0
        with ThreadPoolExecutor(4) as pool:
            while len(predicting_pids(server)) < 2 and sent < 80:
                assert list(pool.map(predict, range(4))) == [200] * 4
                sent += 4
        assert len(predicting_pids(server)) == 2, f"one worker answered all {sent} requests"

        def totals() -> tuple[float, float, dict]:
            status, body = server.call("/metrics", headers=auth)
            assert status == 200, body[:300]
            samples = parse(body.decode())[1]
            ready = {dict(labels)["pid"]: v for (name, labels), v in samples.items() if name == "nerve_worker_ready"}
            return (
                value(samples, "nerve_http_requests_total", route="/predict", method="POST", status="200"),
                value(samples, "nerve_frames_total", kind="single", reliable="unknown"),
                ready,
            )

        # Every scrape, whichever worker answers it, sums both workers' counts.
        for _ in range(6):
            requests, frames, ready = totals()
            assert requests == frames == sent
            assert ready == {str(pid): 1.0 for pid in workers}
        [directory] = metrics_dirs(workers)

        # A killed worker's readiness leaves the sums (child_exit), its counts stay, and its replacement joins (0
        # while it loads the model, then 1).
        os.kill(workers[0], signal.SIGKILL)
        server.wait(lambda: len(set(worker_pids(server.process.pid)) - set(workers)) == 1, "a replacement worker")
        live = {str(pid): 1.0 for pid in worker_pids(server.process.pid)}
        server.wait(lambda: totals()[2] == live, "the live workers' readiness, and only theirs")
        requests, frames, _ = totals()
        assert requests == frames == sent
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()[-3000:]
    assert not directory.exists(), "gunicorn.conf.py leaves the directory it made behind"
    log = server.log.read_text()
    access = [line for line in log.splitlines() if line.startswith('{"request_id"')]
    assert len([line for line in access if '"route": "/predict"' in line]) == sent


def test_the_form_without_javascript_counts_its_frame(app, client):
    """The no-script form post (POST /) answers through analyse like the API; its frame is counted too."""

    def single_frames() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        return sum(float(m) for m in re.findall(r'^nerve_frames_total\{[^}]*kind="single"[^}]*\} (\S+)$', text, re.M))

    page = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    before = single_frames()
    frame = (io.BytesIO(tiff_bytes(phantom(120, 160))), "f.tif")
    assert client.post("/", data={"csrf_token": token, "image": frame}).status_code == 200
    assert single_frames() == before + 1
