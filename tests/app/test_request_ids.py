"""Request ids (app/request_ids.py) and the access log (app/metrics.py): a valid X-Request-ID is echoed, anything
else replaced; every error body carries the id; one JSON log line per request, with no image content, filename
or DICOM tag."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pydicom
import pytest

from tests.media import dicom_bytes, loop

HEX_ID = re.compile(r"[0-9a-f]{32}")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines() -> Iterator[list[str]]:
    """The access log's lines written during the test (it does not propagate, so caplog would not see them)."""
    handler = Lines()
    logger = logging.getLogger("nerve.access")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("given", ["abc", "0af3c2e1-5b7d-4c1e-9f00-000000000001", "trace.span_01-A", "x" * 128])
def test_a_valid_id_is_echoed(client, given):
    response = client.get("/healthz", headers={"X-Request-ID": given})
    assert response.headers["X-Request-ID"] == given


@pytest.mark.parametrize("given", ["", "x" * 129, "has space", "semi;colon", 'quote"d', "<script>", "é"])
def test_an_invalid_id_is_replaced_by_a_new_one(client, given):
    response = client.get("/healthz", headers={"X-Request-ID": given})
    assert HEX_ID.fullmatch(response.headers["X-Request-ID"]), response.headers["X-Request-ID"]


def test_without_an_id_each_request_gets_its_own(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(HEX_ID.fullmatch(value) for value in ids)


@pytest.fixture
def broken_predict(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("app.api.analyse", fail)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("get", "/no-such-route", {}, 404, "not_found"),
        ("get", "/predict", {}, 405, "method_not_allowed"),
        ("post", "/predict", {"data": {}}, 400, "missing_file"),
        ("post", "/predict", {"data": b"text", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ("post", "/predict", {"data": {"image": (io.BytesIO(b"x"), "f.tif"), "threshold": "2"}}, 400, None),
        ("post", "/page/predict", {"data": {}}, 400, "csrf_failed"),
    ],
)
def test_every_error_body_carries_the_id(client, method, path, kwargs, status, code):
    headers = {"X-Request-ID": "client-id-1", **kwargs.pop("headers", {})}
    response = getattr(client, method)(path, headers=headers, **kwargs)
    error = response.get_json()["error"]
    assert response.status_code == status and (code is None or error["code"] == code), error
    assert error["request_id"] == response.headers["X-Request-ID"] == "client-id-1"


def test_an_internal_error_carries_a_new_id(client, broken_predict, phantom_tiff):
    response = client.post("/predict", data=phantom_tiff, content_type="image/tiff")
    error = response.get_json()["error"]
    assert (response.status_code, error["code"]) == (500, "internal_error")
    assert HEX_ID.fullmatch(error["request_id"]) and error["request_id"] == response.headers["X-Request-ID"]


def test_a_401_and_a_batch_items_error_carry_the_id(client, app, monkeypatch, phantom_tiff):
    images = {"images": [(io.BytesIO(phantom_tiff), "a.tif"), (io.BytesIO(b""), "b.tif")]}
    response = client.post("/predict/batch", data=images, headers={"X-Request-ID": "batch-7"})
    assert response.status_code == 200
    first, second = response.get_json()["results"]
    assert "error" not in first and second["error"]["request_id"] == "batch-7"
    monkeypatch.setitem(app.config, "API_TOKEN", "t0ken")
    response = client.post("/predict", data=phantom_tiff, content_type="image/tiff", headers={"X-Request-ID": "r.1"})
    assert response.status_code == 401 and response.get_json()["error"]["request_id"] == "r.1"


def test_an_html_page_error_carries_the_id_in_its_header(client):
    response = client.post("/", data={}, headers={"X-Request-ID": "page-1"})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert response.headers["X-Request-ID"] == "page-1"


def test_one_json_log_line_per_request_with_its_fields(client, access_lines, phantom_tiff):
    secret_name = "Doe^Jane-patient-file"
    response = client.post(
        "/predict",
        data={"image": (io.BytesIO(phantom_tiff), f"{secret_name}.tif")},
        headers={"X-Request-ID": "log-1"},
    )
    assert response.status_code == 200
    client.get("/healthz", headers={"X-Request-ID": "log-2"})
    client.get("/no/such/patient-path")
    assert len(access_lines) == 3
    predicted, health, missing = (json.loads(line) for line in access_lines)
    result = response.get_json()
    assert predicted == {
        "request_id": "log-1",
        "method": "POST",
        "route": "/predict",
        "status": 200,
        "total_ms": predicted["total_ms"],
        "stage_ms": predicted["stage_ms"],
        "kind": "single",
        "frames": 1,
        "model_version": result["model"]["version"],
    }
    timing = result["timing_ms"]
    assert predicted["stage_ms"]["decode"] == timing["decode"] and predicted["stage_ms"]["infer"] == timing["infer"]
    assert predicted["total_ms"] >= timing["total"] > 0
    assert secret_name not in access_lines[0]
    assert (health["route"], health["status"], health["frames"], health["stage_ms"]) == ("/healthz", 200, 0, None)
    assert (missing["route"], missing["status"]) == (None, 404), "an unmatched path is not logged"
    assert "patient-path" not in access_lines[2]


def test_a_loops_log_line_counts_its_frames_and_names_no_dicom_tag(client, access_lines):
    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(loop(3))))
    dataset.PatientName, dataset.PatientID = "Doe^Jane", "PID-98765"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    response = client.post("/predict", data={"image": (io.BytesIO(buffer.getvalue()), "loop.dcm"), "frames": "all"})
    assert response.status_code == 200
    [line] = access_lines
    logged = json.loads(line)
    assert (logged["kind"], logged["frames"]) == ("loop", 3)
    identifying = ["Doe", "PID-98765", *(str(element.value) for element in dataset if element.VR == "UI")]
    assert len(identifying) > 3
    for value in identifying:
        assert value not in line, value
