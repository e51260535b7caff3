"""The optional request parameters `threshold`, `include`, `frames` and `smoothing`, parsed once for the API and
the page."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flask import Request

from app.errors import ApiError
from model.cine import MAX_WINDOW, check_window

#: Fields a client may ask for. `image_png` (the input as an 8-bit PNG) lets the page show a TIFF, which
#: browsers cannot display; it is an addition to the original contract and never sent by default.
#: `dicom_seg` (a DICOM Segmentation object of a DICOM upload, for a single frame or a whole loop) is made once
#: per request, not per frame (app/inference.py).
OPTIONAL_FIELDS = ("mask_png", "overlay_png", "probability_png", "rle", "contours", "image_png", "dicom_seg")
DEFAULT_INCLUDE = frozenset({"mask_png", "rle"})


@dataclass(frozen=True)
class Options:
    threshold: float | None = None  # None: the calibrated threshold from the model's metadata
    include: frozenset[str] = field(default=DEFAULT_INCLUDE)
    all_frames: bool = False  # frames=all: every frame of a multi-frame file, as a cine loop
    smoothing: int | None = None  # moving-average window in frames; None: the configured default


def parse_threshold(text: str | None) -> float | None:
    """A pixel probability cut strictly between 0 and 1; blank means the model's own."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:  # also false for NaN
        raise ApiError(
            "invalid_parameter", f"threshold must be a number between 0 and 1 (exclusive), got {text[:40]!r}"
        )
    return value


def parse_include(text: str | None) -> frozenset[str]:
    """A comma list of optional fields; absent means the default, empty means none."""
    if text is None:
        return DEFAULT_INCLUDE
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names.difference(OPTIONAL_FIELDS))
    if unknown:
        raise ApiError(
            "invalid_parameter",
            f"unknown include value(s) {', '.join(unknown)[:200]}; choose from {', '.join(OPTIONAL_FIELDS)}",
        )
    return frozenset(names)


def parse_frames(text: str | None) -> bool:
    """`all` asks for every frame; absent, empty or `first` keeps the single-frame answer (first frame)."""
    value = (text or "").strip().lower()
    if value not in ("", "first", "all"):
        raise ApiError("invalid_parameter", f"frames must be 'all' or 'first', got {text[:40]!r}")
    return value == "all"


def parse_smoothing(text: str | None) -> int | None:
    """An odd moving-average window in frames (1 = off); blank means the configured default."""
    if text is None or not text.strip():
        return None
    try:
        return check_window(int(text))
    except ValueError:
        raise ApiError(
            "invalid_parameter",
            f"smoothing must be an odd whole number of frames from 1 to {MAX_WINDOW}, got {text[:40]!r}",
        ) from None


def _value(request: Request, name: str) -> str | None:
    """A form field wins over the query string (a raw image body can only use the query string)."""
    if name in request.form:
        return request.form[name]
    return request.args.get(name)


def request_options(request: Request) -> Options:
    return Options(
        threshold=parse_threshold(_value(request, "threshold")),
        include=parse_include(_value(request, "include")),
        all_frames=parse_frames(_value(request, "frames")),
        smoothing=parse_smoothing(_value(request, "smoothing")),
    )
