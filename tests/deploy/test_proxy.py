"""nginx in front of gunicorn (deploy/): its rendered configuration, nginx alone before a stand-in for gunicorn,
and the whole entry command under slow and oversized requests.

What is checked: nginx's own error answers use the service's error shape, codes and statuses (app/errors.py)
with the app's security headers (app/security.py); the limits follow the environment; bodies are refused over
the limit however they are framed and never spooled to disk at it; forwarding headers are trusted only from
FORWARDED_ALLOW_IPS; and slow clients do not stop the service from answering (functional: answers arrive, no
timing is asserted; benchmarks/slow_clients.py measures the speed).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from app.config import DEFAULT_MAX_UPLOAD_BYTES
from app.errors import ERRORS
from app.request_ids import VALID as VALID_REQUEST_ID
from app.security import SECURITY_HEADERS, STRICT_TRANSPORT_SECURITY
from deploy import serve
from tests.deploy.server import EntryCommand, call, free_port, log_tail, multipart, needs_nginx, phantom_tiff

#: Small, so that bodies over it are quick to send; the app reads the same variable.
LIMIT = 256 * 1024
ANSWER_WITHIN_S = 60  # generous: these tests check that answers arrive, not how fast


def rendered(tmp_path: Path, **environ: str) -> str:
    return serve.render_nginx_config(environ, tmp_path)


def error_locations(config: str) -> dict[str, tuple[int, dict]]:
    """{location path: (status, JSON body)} of nginx's own error answers."""
    found = re.findall(r"location = (/_proxy_error/\w+) \{\s*return (\d+) '(.*)\\n';", config)
    return {path: (int(status), json.loads(body)) for path, status, body in found}


def error_headers(config: str) -> dict[str, str]:
    block = config[config.index("location /_proxy_error/ {") :]
    return dict(re.findall(r'add_header ([\w-]+) "([^"]*)" always;', block))


def response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def exchange(port: int, *parts: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw request bytes (the server may answer and close before all are sent), then read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN_S) as sock:
        try:
            for part in parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: the answer is already waiting
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return response(b"".join(chunks))


def chunked_post(size: int) -> list[bytes]:
    """POST /predict with a body of `size` bytes sent with Transfer-Encoding: chunked (no Content-Length)."""
    parts = [
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/tiff\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ]
    for start in range(0, size, 64 * 1024):
        piece = min(64 * 1024, size - start)
        parts.append(b"%x\r\n" % piece + b"\0" * piece + b"\r\n")
    return [*parts, b"0\r\n\r\n"]


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected_status: int, code: str) -> None:
    assert status == expected_status, body[:300]
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert VALID_REQUEST_ID.fullmatch(error["request_id"]) and headers["X-Request-ID"] == error["request_id"]
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert headers.get("Cache-Control") == "no-store"


# --- the rendered configuration ---------------------------------------------------------------------------------


def test_every_error_answer_has_a_code_of_the_table_with_its_status(tmp_path):
    config = rendered(tmp_path)
    answers = error_locations(config)
    assert len(answers) >= 6
    for path, (status, body) in answers.items():
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}, path
        assert body["error"]["request_id"] == "$nerve_request_id", path
        code = body["error"]["code"]
        assert code in ERRORS and ERRORS[code].status == status, f"{path}: {code} answered {status}"
    pages = re.findall(r"error_page ([\d ]+) =(\d+) (\S+);", config)
    assert {"400", "413", "414", "494", "502", "504"} <= {s for statuses, _, _ in pages for s in statuses.split()}
    for _statuses, status, path in pages:
        assert answers[path][0] == int(status), f"{path} answers {answers[path][0]}, error_page says {status}"


def test_error_answers_carry_the_apps_security_headers_and_hsts_only_over_https(tmp_path):
    plain = error_headers(rendered(tmp_path))
    assert plain == {**SECURITY_HEADERS, "Cache-Control": "no-store"}
    https = error_headers(rendered(tmp_path, NERVE_HTTPS="1"))
    assert https == {**plain, "Strict-Transport-Security": STRICT_TRANSPORT_SECURITY}


def test_limits_and_port_follow_the_environment_and_bodies_stay_in_memory(tmp_path):
    assert serve.DEFAULT_MAX_UPLOAD_BYTES == DEFAULT_MAX_UPLOAD_BYTES
    config = rendered(tmp_path, PORT="9123", NERVE_MAX_UPLOAD_BYTES="12345", NERVE_TIMEOUT="50")
    assert not re.search(r"@[A-Z_]+@", config), "a marker was left unfilled"
    assert "listen 0.0.0.0:9123 default_server;" in config
    assert "client_max_body_size 12345;" in config
    buffer = int(re.search(r"client_body_buffer_size (\d+);", config).group(1))
    assert buffer > 12345, "a body at the limit must fit the in-memory buffer"
    for directive in ("proxy_request_buffering on;", "proxy_max_temp_file_size 0;", "daemon off;"):
        assert directive in config
    assert f"proxy_read_timeout {50 + serve.UPSTREAM_TIMEOUT_MARGIN_S}s;" in config
    assert str(tmp_path / "gunicorn.sock") in config and f"pid {tmp_path}/nginx.pid;" in config


def test_no_user_directive_when_unprivileged(tmp_path, monkeypatch):
    monkeypatch.setattr(serve.os, "geteuid", lambda: 10001)
    assert not re.search(r"^\s*user ", rendered(tmp_path), flags=re.M)


@pytest.mark.parametrize(
    "setting",
    [{"PORT": "http"}, {"PORT": "70000"}, {"NERVE_MAX_UPLOAD_BYTES": "-1"}, {"FORWARDED_ALLOW_IPS": "proxy.local"}],
)
def test_bad_settings_stop_start_up_with_a_message(tmp_path, setting):
    with pytest.raises(SystemExit, match=next(iter(setting))):
        rendered(tmp_path, **setting)


# --- nginx alone, before a stand-in for gunicorn ----------------------------------------------------------------


class EchoHeaders(BaseHTTPRequestHandler):
    """Answers every request with the headers it received, as JSON: what gunicorn would be told."""

    def do_GET(self) -> None:
        body = json.dumps({name.lower(): value for name, value in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def nginx_before(request):
    """Start nginx with the rendered configuration for the given environment, a stand-in on gunicorn's socket
    unless `upstream=False`; yields nginx's port."""

    def start(upstream: bool = True, **environ: str) -> int:
        runtime = Path(tempfile.mkdtemp(prefix="nerve-test-"))  # short: a unix socket path is at most 107 bytes
        request.addfinalizer(lambda: shutil.rmtree(runtime, ignore_errors=True))
        port = free_port()
        (runtime / "nginx.conf").write_text(serve.render_nginx_config({**environ, "PORT": str(port)}, runtime))
        if upstream:
            echo = UnixHTTPServer(str(runtime / "gunicorn.sock"), EchoHeaders)
            threading.Thread(target=echo.serve_forever, daemon=True).start()
            request.addfinalizer(echo.shutdown)
        log = runtime / "nginx.log"
        with open(log, "wb") as out:
            nginx = subprocess.Popen(serve.nginx_command(serve.find_nginx(), runtime), stdout=out, stderr=out)
        request.addfinalizer(lambda: (nginx.terminate(), nginx.wait(timeout=30)))
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while time.monotonic() < deadline:
            assert nginx.poll() is None, log_tail(log)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"nginx did not listen within {ANSWER_WITHIN_S} s:\n{log_tail(log)}")

    return start


SPOOFED = (
    b"GET /echo HTTP/1.1\r\nHost: example.org:8443\r\nX-Forwarded-For: 203.0.113.9\r\n"
    b"X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\nForwarded: for=203.0.113.9;proto=https\r\n"
    b"Connection: close\r\n\r\n"
)


@needs_nginx
def test_an_untrusted_peers_forwarding_headers_are_replaced(nginx_before):
    port = nginx_before(FORWARDED_ALLOW_IPS="10.0.0.0/8")  # this test's client, 127.0.0.1, is not in it
    status, _, body = exchange(port, SPOOFED)
    seen = json.loads(body)
    assert status == 200
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "http"
    assert "x-forwarded-ssl" not in seen and "forwarded" not in seen
    assert seen["host"] == "example.org:8443"


@needs_nginx
def test_a_trusted_proxy_passes_its_forwarding_headers_on(nginx_before):
    port = nginx_before()  # gunicorn's default: loopback is trusted
    seen = json.loads(exchange(port, SPOOFED)[2])
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1" and seen["x-forwarded-proto"] == "https"
    assert "x-forwarded-ssl" not in seen and "forwarded" not in seen


@needs_nginx
@pytest.mark.parametrize(
    ("given", "kept"), [(b"client-id.7", True), (b"x" * 129, False), (b"not valid!", False), (None, False)]
)
def test_a_valid_request_id_is_passed_on_and_any_other_replaced(nginx_before, given, kept):
    port = nginx_before()
    header = b"" if given is None else b"X-Request-ID: " + given + b"\r\n"
    seen = json.loads(exchange(port, b"GET /echo HTTP/1.1\r\nHost: t\r\n" + header + b"Connection: close\r\n\r\n")[2])
    if kept:
        assert seen["x-request-id"] == given.decode()
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", seen["x-request-id"]), seen["x-request-id"]


@needs_nginx
def test_nginx_error_answers_carry_the_clients_request_id(nginx_before):
    port = nginx_before(upstream=False)
    status, headers, body = exchange(
        port, b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Request-ID: abc-123\r\nConnection: close\r\n\r\n"
    )
    assert_json_error(status, headers, body, 500, "internal_error")
    assert json.loads(body)["error"]["request_id"] == headers["X-Request-ID"] == "abc-123"


@needs_nginx
def test_gunicorn_not_answering_is_a_json_500(nginx_before):
    port = nginx_before(upstream=False)
    assert_json_error(
        *exchange(port, b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"), 500, "internal_error"
    )


@needs_nginx
def test_the_error_paths_are_not_reachable_from_outside(nginx_before):
    port = nginx_before()
    status, headers, body = exchange(
        port, b"GET /_proxy_error/internal_error HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert_json_error(status, headers, body, 404, "not_found")


# --- the entry command: nginx in front of the real app ------------------------------------------------------------


@pytest.fixture(scope="module")
def served(model_dir_env, tmp_path_factory):
    server = EntryCommand(
        tmp_path_factory.mktemp("proxy") / "server.log", **model_dir_env, NERVE_MAX_UPLOAD_BYTES=str(LIMIT)
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@needs_nginx
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_body_over_the_limit_is_a_json_413_however_it_is_framed(served, framing):
    size = LIMIT + 64 * 1024
    if framing == "chunked":
        parts = chunked_post(size)
    else:
        head = f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/tiff\r\nContent-Length: {size}\r\n\r\n"
        parts = [head.encode(), b"\0" * size]
    assert_json_error(*exchange(served.port, *parts), 413, "request_too_large")


@needs_nginx
def test_a_body_at_the_limit_reaches_the_app_and_never_touches_disk(served):
    status, _, body = exchange(served.port, *chunked_post(LIMIT))
    assert status == 415 and json.loads(body)["error"]["code"] == "unsupported_image_format"  # zeros: no image
    head = f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/tiff\r\nContent-Length: {LIMIT}\r\n"
    status, _, _ = exchange(served.port, head.encode() + b"Connection: close\r\n\r\n", b"\0" * LIMIT)
    assert status == 415
    # nginx unlinks a temporary file as soon as it has opened it, so the folder shows nothing; it does log each.
    assert "temporary file" not in log_tail(served.log, 200_000), "nginx spooled a body or response to disk"


@needs_nginx
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"NOT A REQUEST\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ],
    ids=["request_line_too_long", "header_too_long", "malformed", "target_not_ascii"],
)
def test_a_bad_request_line_or_header_is_a_json_400_with_the_security_headers(served, request_bytes):
    assert_json_error(*exchange(served.port, request_bytes), 400, "bad_request")


@needs_nginx
@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Proto: http", 200, None),
        (b"SOME_VERY_LONG_METHOD_NAME /predict HTTP/1.1\r\nHost: t", 405, "method_not_allowed"),
        (
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/tiff\r\nContent-Type: image/png\r\n"
            b"Content-Length: 3",
            415,
            "unsupported_image_format",
        ),
    ],
    ids=["conflicting_scheme_headers", "unconventional_method", "repeated_content_type"],
)
def test_what_gunicorn_alone_refuses_in_html_gets_the_apps_json(served, head, status, code):
    """gunicorn answers these with an HTML page of its own; behind nginx they reach the app, which answers JSON."""
    body = b"abc" if b"Content-Length" in head else b""
    answer_status, headers, answer = exchange(served.port, head + b"\r\nConnection: close\r\n\r\n" + body)
    assert answer_status == status, answer[:300]
    assert headers["Content-Type"].startswith("application/json")
    assert code is None or json.loads(answer)["error"]["code"] == code


@needs_nginx
def test_slow_clients_do_not_stop_the_service_answering(served):
    """More slow connections than gunicorn has threads (2 x 2), half trickling headers and half a body; the
    service must still answer /healthz and /predict (gunicorn alone keeps these waiting until the slow clients
    finish, which they never do)."""
    slow = []
    for index in range(8):
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=ANSWER_WITHIN_S)
        head = b"POST /predict HTTP/1.1\r\nHost: t\r\n"
        if index % 2:
            head += b"Content-Type: image/tiff\r\nContent-Length: 100000\r\n\r\n"
        sock.sendall(head)
        slow.append(sock)
    cut_off: set[int] = set()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            for index, sock in enumerate(slow):
                if index in cut_off:
                    continue
                try:
                    sock.sendall(b"\0" if index % 2 else b"X")
                except OSError:  # a header trickler reaches nginx's header timeout on a very slow machine
                    cut_off.add(index)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(1.5)  # every slow client has started its request and sent more of it
        for _ in range(3):
            status, body = call(f"{served.base}/healthz")
            assert status == 200, body[:300]
        body, content_type = multipart("image", "phantom.tif", phantom_tiff(), "image/tiff")
        status, payload = call(f"{served.base}/predict", body, content_type)
        assert status == 200, payload[:300]
    finally:
        stop.set()
        trickler.join(timeout=10)
        for sock in slow:
            sock.close()
    body_tricklers = {index for index in range(len(slow)) if index % 2}
    assert not cut_off & body_tricklers, "nginx dropped slow bodies instead of holding them"
