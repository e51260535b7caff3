"""How the image is built, tagged and tested, checked without podman: `make image` tags it
<model version>-<git short sha> in docker format, `make image-test` runs tests/deploy/test_image.py on exactly that
tag, CI runs it, and the image names in the docs follow the scheme (the model version, not an old one)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.deploy.dockerfile import ROOT

VERSION = json.loads((ROOT / "model" / "metadata.json").read_text())["version"]


def dry_run(target: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_image_builds_in_docker_format_tagged_with_the_model_version_and_commit():
    build = dry_run("image")
    assert "podman build --format docker" in build  # the OCI default drops HEALTHCHECK
    assert re.search(rf"-t nerve-seg:{re.escape(VERSION)}-[0-9a-f]{{7,}}(-dirty)? ", build), build


def test_make_image_test_checks_the_tag_just_built_and_ci_runs_it():
    tags = re.findall(r"-t (nerve-seg:\S+)", dry_run("image"))
    assert f"NERVE_IMAGE={tags[0]} " in dry_run("image-test") and "tests/deploy/test_image.py" in dry_run("image-test")
    assert "\nmake image-test\n" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("doc", ["docs/deploy.md", "README.md"])
def test_image_names_in_the_docs_follow_the_tag_scheme(doc):
    tags = re.findall(r"nerve-seg:(\d[\w.-]*)", (ROOT / doc).read_text())
    stale = [tag for tag in tags if not tag.startswith(f"{VERSION}-")]
    assert not stale, f"{doc}: image tags not <model version {VERSION}>-<git sha>: {stale}"
