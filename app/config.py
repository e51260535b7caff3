"""Service settings, read from environment variables so one image runs anywhere (docs/api.md, "Configuration")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from model.artifact import MODEL_DIR
from model.cine import DEFAULT_MAX_FRAMES, check_window
from model.decode.isolated import DEFAULT_DECODE_MEMORY_BYTES
from model.decode.limits import DEFAULT_MAX_PIXELS
from model.segmenter import RUNTIMES

#: 20 MiB: room for a full batch of scanner frames as TIFF (docs/api.md, "Configuration").
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_BATCH = 32
#: Seconds a request may take in the app: far more than a full batch takes (docs/performance.md), so it only
#: stops requests that are stuck behind an overload; keep it below any proxy's timeout so the client gets
#: this service's JSON answer rather than the proxy's page.
DEFAULT_REQUEST_TIMEOUT_S = 30.0
#: Largest answer in bytes of its encoded fields (413 response_too_large above): far above a 300-frame loop
#: with the default fields, it bounds what one request can make a worker build (docs/api.md, "Configuration").
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Temporal smoothing off by default: on the shared data it lowered Dice (docs/cine.md).
DEFAULT_CINE_SMOOTHING = 1
MODEL_LOADING_MODES = ("eager", "background")
#: The values of an on/off variable.
SWITCH_VALUES = ("0", "1")


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use; the message names it."""


def _positive(environ: Mapping[str, str], name: str, default: int | float | None, kind: type[int] | type[float]):
    """A positive, finite int or float from the environment; the default when unset or empty."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    what = "a whole number" if kind is int else "a number of seconds"
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if not 0 < value < float("inf"):  # also false for NaN
        raise ConfigError(f"{name}={raw!r} must be {what} above 0")
    return value


def _smoothing_window(environ: Mapping[str, str]) -> int:
    value = _positive(environ, "NERVE_CINE_SMOOTHING", DEFAULT_CINE_SMOOTHING, int)
    try:
        return check_window(value)
    except ValueError as exc:
        raise ConfigError(f"NERVE_CINE_SMOOTHING: {exc}") from None


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = environ.get(name, "").strip() or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def settings_from_env(environ: Mapping[str, str] = os.environ) -> dict:
    """Flask config keys from NERVE_* variables; unset or empty variables take their documented default."""
    return {
        "MODEL_DIR": Path(environ.get("NERVE_MODEL_DIR", "").strip() or MODEL_DIR),
        "MODEL_LOADING": _choice(environ, "NERVE_MODEL_LOADING", "eager", MODEL_LOADING_MODES),
        "RUNTIME": _choice(environ, "NERVE_RUNTIME", "auto", RUNTIMES),
        "INFERENCE_THREADS": _positive(environ, "NERVE_INFERENCE_THREADS", None, int),
        "SECRET_KEY": environ.get("NERVE_SECRET_KEY") or None,
        "API_TOKEN": environ.get("NERVE_API_TOKEN") or None,
        "MAX_CONTENT_LENGTH": _positive(environ, "NERVE_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES, int),
        "MAX_PIXELS": _positive(environ, "NERVE_MAX_PIXELS", DEFAULT_MAX_PIXELS, int),
        "MAX_BATCH": _positive(environ, "NERVE_MAX_BATCH", DEFAULT_MAX_BATCH, int),
        "REQUEST_TIMEOUT": _positive(environ, "NERVE_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT_S, float),
        "MAX_FRAMES": _positive(environ, "NERVE_MAX_FRAMES", DEFAULT_MAX_FRAMES, int),
        "CINE_SMOOTHING": _smoothing_window(environ),
        "MAX_RESPONSE_BYTES": _positive(environ, "NERVE_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES, int),
        "DECODE_MEMORY_BYTES": _positive(environ, "NERVE_DECODE_MEMORY_BYTES", DEFAULT_DECODE_MEMORY_BYTES, int),
        # Decoding runs in helper processes bounded in time and memory (model/decode/isolated.py); only tests
        # that spy on the decoders in-process turn this off.
        "DECODE_ISOLATION": True,
        # A setting, not detected: behind a TLS-terminating proxy every request reaches the app as plain HTTP.
        # Off by default because `make run` and in-cluster calls are plain HTTP, where a Secure session cookie
        # is never sent back (the page's forms would fail) and HSTS would lock browsers out of the site.
        "HTTPS": _choice(environ, "NERVE_HTTPS", "0", SWITCH_VALUES) == "1",
    }
