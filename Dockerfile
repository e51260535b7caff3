# The serving image: the Flask app and the shipped model under gunicorn behind nginx, nothing for tests or training.
#   docker build -t nerve-seg .
#   docker run --rm -p 8000:8000 nerve-seg          # Cloud Run sets PORT itself; nginx listens on 0.0.0.0:$PORT
# tests/deploy/test_entry_command.py runs this file's CMD outside Docker; tests/deploy/test_dockerfile.py checks its rules.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv

RUN useradd --create-home --uid 10001 --user-group nerve

# nginx reads whole requests in memory before gunicorn's threads see them, so slow clients cannot hold those
# threads (deploy/serve.py). Debian's package, unpinned: a pinned version disappears from the archive with the
# next security update and would break the build instead of taking the fix.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
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
