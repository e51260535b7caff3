"""The README's commands are the ones CI, the Makefile and the Dockerfile really run (keeps the docs true)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.deploy import dockerfile

ROOT = dockerfile.ROOT
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
MAKEFILE = ROOT / "Makefile"


def fenced_lines(text: str) -> list[str]:
    """Lines inside ``` blocks, stripped, without comments or blank lines."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if inside and line.strip() and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", MAKEFILE.read_text(), flags=re.M))


def recipe(target: str) -> str:
    match = re.search(rf"^{target}:.*\n((?:\t.*\n?)+)", MAKEFILE.read_text(), flags=re.M)
    assert match, f"Makefile has no recipe for {target}"
    return match.group(1)


def ci_commands() -> list[str]:
    lines = (line.strip() for line in CI_RUN.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_gives_the_two_commands():
    commands = {line.split(" #")[0].strip() for line in fenced_lines(README.read_text())}
    assert {"make run", "make test"} <= commands


def test_every_make_command_in_the_readme_is_a_target():
    targets = make_targets()
    used = {m for line in fenced_lines(README.read_text()) for m in re.findall(r"\bmake (\w[\w-]*)", line)}
    assert used, "README shows no make command"
    assert used <= targets, f"README uses missing targets: {used - targets}"


def test_ci_runs_the_readme_test_command_and_lint():
    commands = ci_commands()
    assert any(re.match(r"make test(\s|$)", c) for c in commands), "CI must run the README's `make test`"
    assert any(re.match(r"make lint(\s|$)", c) for c in commands)
    assert "ruff check" in recipe("lint")


def test_make_test_runs_the_whole_pytest_suite():
    assert re.search(r"\$\(PY\) -m pytest \$\(PYTEST_ARGS\)\s*$", recipe("test"), flags=re.M)
    assert re.search(r"^PYTEST_ARGS \?=\s*$", MAKEFILE.read_text(), flags=re.M), "no default selection of tests"


def test_make_run_is_the_container_entry_command():
    line = next(line for line in recipe("run").splitlines() if "deploy.serve" in line)
    argv = shlex.split(line.strip().replace("$(PY)", ".venv/bin/python"))
    argv = argv[argv.index(next(a for a in argv if a.endswith("python"))) :]
    argv[0] = Path(argv[0]).name
    assert argv == dockerfile.cmd()


def test_nginx_is_installed_where_chromium_is():
    """The entry command needs nginx: `make run` and `make test` install it when root with apt-get, as CI does."""
    prerequisites = re.search(r"^run:(.*)$", MAKEFILE.read_text(), flags=re.M).group(1).split()
    assert "nginx" in prerequisites
    assert "nginx" in re.search(r"^test:(.*)$", MAKEFILE.read_text(), flags=re.M).group(1).split()
    assert "apt-get install" in recipe("nginx") and "nginx" in recipe("nginx").split()
    assert "need+=(nginx)" in CI_RUN.read_text()


def test_readme_links_resolve():
    targets = [t for t in re.findall(r"\]\(([^)#\s]+)", README.read_text()) if "://" not in t]
    missing = [t for t in targets if not (ROOT / t).exists()]
    # The model card is written by training together with the shipped model; like the shipped-model tests,
    # its link is only checked once model/ holds that model.
    if missing == ["model/MODEL_CARD.md"] and not (ROOT / "model" / "metadata.json").exists():
        pytest.skip("no shipped model in model/ yet, so no model card to link to")
    assert not missing, f"README links to missing {missing}"


def test_contributing_commands_and_paths_exist():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    used = {m for line in fenced_lines(text) for m in re.findall(r"\bmake (\w[\w-]*)", line)}
    assert {"run", "test", "lint", "audit", "train", "evaluate"} <= used <= make_targets()
    paths = {p for p in re.findall(r"`([\w./-]+\.(?:py|json|md|txt))`", text) if "/" in p}
    assert {"app/errors.py", "model/errors.py", "model/decode/formats.py", "docs/api.md"} <= paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"CONTRIBUTING.md names missing files {missing}"
    recipe = text[text.index("\n## Training recipe\n") :]
    assert "training/recipes/" in recipe and "`training/recipe.py`" in recipe  # where the recipe lives


def test_ci_script_is_executable_bash():
    assert CI_RUN.stat().st_mode & 0o111, ".ci/run must be executable"
    assert CI_RUN.read_text().startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in CI_RUN.read_text()
    subprocess.run(["bash", "-n", str(CI_RUN)], check=True)


def test_every_pinned_dependency_is_explained():
    documented = (ROOT / "docs" / "dependencies.md").read_text().lower()
    for name in ("requirements-serve.txt", "requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line or line.startswith("-"):
                continue
            package = re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0].lower()
            assert f"| {package} |" in documented, f"{name}: {package} has no line in docs/dependencies.md"
