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
ENTRY_COMMAND = ["gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"]
#: What the image may contain: the service, the model, its page assets and the server config.
ALLOWED_SOURCES = {"requirements.txt", "app/", "model/", "templates/", "static/", "gunicorn.conf.py"}
#: .dockerignore must keep these out of the build context (environments, runs, tests, data).
MUST_IGNORE = [".venv", "runs", "tests", "training", "shared", "data", ".git"]


def copy_sources() -> list[str]:
    sources = []
    for args in dockerfile.all_of("COPY"):
        parts = [part for part in shlex.split(args) if not part.startswith("--")]
        sources.extend(parts[:-1])
    return sources


def test_base_image_is_slim_python_311():
    froms = dockerfile.all_of("FROM")
    assert len(froms) == 1 and froms[0].startswith("python:3.11-slim"), froms


def test_dependencies_are_a_cached_layer_before_the_code():
    steps = dockerfile.instructions()
    first_code_copy = next(i for i, (name, args) in enumerate(steps) if name == "COPY" and "app/" in args)
    before = steps[:first_code_copy]
    assert ("COPY", "requirements.txt .") in before
    assert any(name == "RUN" and "pip install" in args and "-r requirements.txt" in args for name, args in before)


def test_no_dev_tools_or_training_material_in_the_image():
    text = " ".join(args for _, args in dockerfile.instructions())
    for banned in ("requirements-dev", "pytest", "ruff", "playwright", "matplotlib"):
        assert banned not in text, f"{banned} must not be installed in the serving image"
    sources = copy_sources()
    assert set(sources) <= ALLOWED_SOURCES, f"unexpected COPY sources: {set(sources) - ALLOWED_SOURCES}"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository, the build would fail"


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
