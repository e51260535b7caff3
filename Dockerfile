# The serving image: the Flask app and the shipped model under gunicorn behind nginx, nothing for tests or training.
#   make image          podman build --format docker (keeps HEALTHCHECK) -t nerve-seg:<model version>-<git sha> .
#   docker build -t nerve-seg:1.4.0-<git sha> .  &&  docker run --rm -p 8000:8000 nerve-seg:1.4.0-<git sha>
# Cloud Run sets PORT itself; nginx listens on 0.0.0.0:$PORT. `make image-test` builds and runs the image and checks
# it from outside (tests/deploy/test_image.py); test_entry_command.py runs the CMD outside it, test_dockerfile.py
# checks this file's rules. docs/deploy.md has the commands and figures.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv

RUN useradd --create-home --uid 10001 --user-group nerve

# nginx reads whole requests in memory before gunicorn's threads see them, so slow clients cannot hold those
# threads (deploy/serve.py). Debian's package, unpinned: a pinned version disappears from the archive with the
# next security update and would break the build instead of taking the fix. apt-get clean drops the downloaded
# packages, which Debian's docker images delete by configuration but a base without it keeps (77 MB measured).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, in their own layer: it is rebuilt only when requirements-serve.txt changes.
COPY requirements-serve.txt .
RUN pip install --no-cache-dir -r requirements-serve.txt

COPY app/ app/
COPY model/ model/
COPY templates/ templates/
COPY static/ static/
COPY gunicorn.conf.py .
COPY deploy/ deploy/

USER 10001:10001

# onnxruntime only: model/ carries the committed ONNX export beside the weights (stamped with their sha256),
# so a missing or stale one must stop start-up rather than fall back to a Keras that is not installed.
ENV PORT=8000 \
    NERVE_RUNTIME=onnxruntime
EXPOSE 8000

# slim has no curl: ask /readyz (model loaded and warmed) with the interpreter that is already there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/readyz', timeout=4)"]

# nginx on $PORT in front of gunicorn on a private unix socket; SIGTERM stops both gracefully (deploy/serve.py).
CMD ["python", "-m", "deploy.serve"]
