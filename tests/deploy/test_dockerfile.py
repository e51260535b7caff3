"""The Dockerfile's rules, checked statically (no Docker engine here), and hadolint when it is installed."""

from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import dockerfile

ROOT = dockerfile.ROOT
ENTRY_COMMAND = ["python", "-m", "deploy.serve"]
#: What the image may contain: the service, the model, its page assets and the server config (gunicorn, nginx).
ALLOWED_SOURCES = {
    "requirements.txt",
    "requirements-serve.txt",
    "app/",
    "model/",
    "templates/",
    "static/",
    "gunicorn.conf.py",
    "deploy/",
}
#: .dockerignore must keep these out of the build context (environments, runs, tests, data).
MUST_IGNORE = [".venv", "runs", "tests", "training", "shared", "data", ".git"]


def copy_sources() -> list[str]:
    """What COPY takes from the build context (copies from an earlier stage are not in the repository)."""
    sources = []
    for args in dockerfile.all_of("COPY"):
        if "--from=" in args:
            continue
        parts = [part for part in shlex.split(args) if not part.startswith("--")]
        sources.extend(parts[:-1])
    return sources


def test_every_stage_is_slim_python_311():
    froms = dockerfile.all_of("FROM")
    assert froms and all(f.startswith("python:3.11-slim") for f in froms), froms


def test_dependencies_are_a_cached_layer_before_the_code():
    steps = dockerfile.serving_stage()
    first_code_copy = next(i for i, (name, args) in enumerate(steps) if name == "COPY" and "app/" in args)
    before = steps[:first_code_copy]
    assert ("COPY", "requirements-serve.txt .") in before
    assert any(name == "RUN" and "pip install" in args and "-r requirements-serve.txt" in args for name, args in before)


def test_the_image_serves_the_committed_onnx_export_without_tensorflow():
    """model/ carries the ONNX export beside the weights, so the one stage copies it with them, installs no
    TensorFlow, and insists on onnxruntime so a broken export stops start-up instead of failing later."""
    serving = dockerfile.serving_stage()
    assert len(dockerfile.all_of("FROM")) == 1  # no export stage: nothing in the image needs TensorFlow
    assert ("COPY", "model/ model/") in serving
    assert "model/unet.onnx" not in (ROOT / ".dockerignore").read_text().split()
    assert not any("requirements.txt" in args.replace("requirements-serve.txt", "") for _, args in serving)
    assert dockerfile.env().get("NERVE_RUNTIME") == "onnxruntime"
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements-serve.txt").read_text().splitlines())
    served = {line.split("==")[0].lower() for line in lines if line}
    assert "onnxruntime" in served
    assert not served & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "jax", "torch"}, served
    assert "-r requirements-serve.txt" in (ROOT / "requirements.txt").read_text()


def test_no_dev_tools_or_training_material_in_the_image():
    text = " ".join(args for _, args in dockerfile.instructions())
    for banned in ("requirements-dev", "pytest", "ruff", "playwright", "matplotlib"):
        assert banned not in text, f"{banned} must not be installed in the serving image"
    sources = copy_sources()
    assert set(sources) <= ALLOWED_SOURCES, f"unexpected COPY sources: {set(sources) - ALLOWED_SOURCES}"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository, the build would fail"


def test_nginx_is_installed_lean_in_the_serving_stage():
    """The entry command runs nginx in front of gunicorn: Debian's package, without recommends, lists removed in the
    same layer; installed as root, before USER drops to the service's user."""
    steps = dockerfile.serving_stage()
    installs = [(i, args) for i, (name, args) in enumerate(steps) if name == "RUN" and "apt-get install" in args]
    assert len(installs) == 1, installs
    index, args = installs[0]
    assert "apt-get update" in args and "--no-install-recommends" in args and "-y" in args
    assert " nginx" in args and "rm -rf /var/lib/apt/lists/*" in args
    assert index < next(i for i, (name, _) in enumerate(steps) if name == "USER")


def test_runs_as_a_non_root_user():
    steps = dockerfile.instructions()
    users = [(i, args) for i, (name, args) in enumerate(steps) if name == "USER"]
    assert users, "no USER: the container would run as root"
    index, user = users[-1]
    assert user.split(":")[0] not in {"root", "0"}, user
    cmd_index = max(i for i, (name, _) in enumerate(steps) if name == "CMD")
    assert index < cmd_index


def test_port_healthcheck_and_entry_command():
    assert dockerfile.env().get("PORT") == "8000"
    assert dockerfile.all_of("EXPOSE") == ["8000"]
    checks = dockerfile.all_of("HEALTHCHECK")
    assert len(checks) == 1 and "/readyz" in checks[0], checks
    assert "PORT" in checks[0], "the health check must follow PORT, which Cloud Run may change"
    assert "curl" not in checks[0] and "wget" not in checks[0], "python:3.11-slim has neither curl nor wget"
    assert dockerfile.cmd() == ENTRY_COMMAND


def test_healthcheck_command_is_valid_python():
    argv = dockerfile.exec_form(dockerfile.all_of("HEALTHCHECK")[0].split("CMD", 1)[1].strip())
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<HEALTHCHECK>", "exec")


def test_dockerignore_keeps_environments_runs_tests_and_data_out():
    patterns = dockerfile.ignore_patterns()
    for name in MUST_IGNORE:
        assert any(fnmatch.fnmatch(name, p.rstrip("/")) for p in patterns if not p.startswith("!")), name
    assert any(fnmatch.fnmatch("x/frame_1.tif", p) for p in patterns), "TIFF frames must stay out of the image"
    for source in copy_sources():
        top = source.rstrip("/")
        assert not any(fnmatch.fnmatch(top, p.rstrip("/")) for p in patterns), f".dockerignore drops {source}"


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if not binary:
        pytest.skip("hadolint is not installed (requirements-dev.txt installs it on Linux x86_64)")
    result = subprocess.run([binary, str(dockerfile.DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
