# Every target builds .venv on first use (python3.11, else python3) and reinstalls it when a requirements
# file changes: the stamp's name carries a checksum of both files. Nothing has to be typed before them.
#   make run        serve the shipped model on http://localhost:$(PORT) (nginx + gunicorn, the Dockerfile's CMD)
#   make onnx       re-export model/unet.keras to the committed model/unet.onnx that serving runs
#   make test       the whole test suite (installs Debian chromium, nginx and dicom3tools for their tests when root)
#   make train      the shipped recipe (training/recipes/) on $(DATA) into $(RUN): 5 folds + the final model, installed
#   make evaluate   evaluate model/ on $(DATA) into runs/eval
#   make bench      every benchmark script in benchmarks/
#   make lint       ruff check, ruff format --check, and hadolint on the Dockerfile
#   make audit      pip-audit over the pinned requirements (needs PyPI; fails on unreviewed vulnerabilities)
#   make image      build the serving image nerve-seg:<model version>-<git short sha> with podman (docs/deploy.md)
#   make image-test build it, run it and check it from outside against the host's own run (tests/deploy/test_image.py)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
REQUIREMENTS := requirements-serve.txt requirements.txt requirements-dev.txt
REQUIREMENTS_SUM := $(shell cat $(REQUIREMENTS) | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(REQUIREMENTS_SUM)

PORT ?= 8000
export PORT
DATA ?= ../shared/data/ultrasound-nerve
RUN ?= runs/train
PYTEST_ARGS ?=
CHROMIUM := /usr/bin/chromium

# The image's tag names what it serves and what it was built from: <model version>-<git short sha>, with -dirty when
# the working tree differs from that commit (then the sha does not say what is inside). Read once per make run, so
# that image-test tests the tag image just built even if the tree changes meanwhile.
IMAGE_NAME ?= nerve-seg
MODEL_VERSION := $(shell $(PYTHON) -c 'import json; print(json.load(open("model/metadata.json"))["version"])')
GIT_SHA := $(or $(shell git rev-parse --short HEAD 2>/dev/null),unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
IMAGE ?= $(IMAGE_NAME):$(MODEL_VERSION)-$(GIT_SHA)

.PHONY: help venv run onnx test train evaluate bench lint audit chromium nginx dicom3tools image image-test clean

help:
	@sed -n 's/^#   make /make /p' Makefile

venv: $(STAMP)

$(STAMP): $(REQUIREMENTS)
	@test -n "$(PYTHON)" || { echo "make: neither python3.11 nor python3 is on PATH" >&2; exit 1; }
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

# model/unet.onnx is committed beside the weights (training's --install writes both); this re-exports it by hand,
# e.g. after copying in other weights. A stale export is never served: its stamp must match metadata.json.
onnx: venv
	$(PY) -m model.onnx_export

# The container's entry command: nginx in front of gunicorn (deploy/serve.py); it says what to do without nginx.
run: venv nginx
	exec $(PY) -m deploy.serve

# The browser test drives Debian's chromium; without it (not root, no apt-get) that test skips itself.
chromium:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

# nginx fronts gunicorn in the container and in `make run`; without it (not root, no apt-get) its tests skip themselves.
nginx:
	@if ! PATH="$$PATH:/usr/sbin" command -v nginx >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing nginx, the proxy in front of gunicorn"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx; \
	fi

# dicom3tools' dciodvfy validates the DICOM SEG output in its test; without it that check skips itself.
dicom3tools:
	@if ! command -v dciodvfy >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing dicom3tools, whose dciodvfy validates the DICOM SEG output"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dicom3tools; \
	fi

test: venv chromium nginx dicom3tools
	$(PY) -m pytest $(PYTEST_ARGS)

train: venv
	$(PY) -m training.train --data $(DATA) --out $(RUN) --install

evaluate: venv
	$(PY) -m training.evaluate --data $(DATA) --model model --out runs/eval

bench: venv
	@set -e; shopt -s nullglob; scripts=(benchmarks/*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no scripts in benchmarks/" >&2; exit 1; fi; \
	for script in "$${scripts[@]}"; do \
		case $$(basename $$script) in _*) continue;; esac; \
		echo "== $$script"; $(PY) "$$script"; \
	done

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@if [ -x $(VENV)/bin/hadolint ]; then $(VENV)/bin/hadolint Dockerfile && echo "hadolint: Dockerfile clean"; \
	else echo "hadolint not installed on this platform: Dockerfile not linted"; fi

# Known vulnerabilities in the pins; reviewed exceptions in .ci/audit-ignore.txt (docs/reliability.md).
audit: venv
	$(PY) .ci/audit.py

# podman, as these machines have no Docker engine (as root, bash ../shared/tools/container-base.sh installs it and a
# stand-in base image where no registry is reachable). --format docker keeps the HEALTHCHECK, which OCI drops.
image:
	@command -v podman >/dev/null || { echo "make image: podman is not installed (as root: bash ../shared/tools/container-base.sh)" >&2; exit 1; }
	podman build --format docker --network host \
		--label org.opencontainers.image.version=$(MODEL_VERSION) --label org.opencontainers.image.revision=$(GIT_SHA) \
		-t $(IMAGE) -t $(IMAGE_NAME):latest .

# The image run as a host runs it, checked against the host's own run of the same entry command (nginx needed here).
image-test: image venv nginx
	NERVE_IMAGE=$(IMAGE) $(PY) -m pytest -v -s tests/deploy/test_image.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
