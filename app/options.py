"""The optional request parameters `threshold` and `include`, parsed once for the API and the page."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flask import Request

from app.errors import ApiError

#: Fields a client may ask for. `image_png` (the input as an 8-bit PNG) lets the page show a TIFF, which
#: browsers cannot display; it is an addition to the issue's list and never sent by default.
OPTIONAL_FIELDS = ("mask_png", "overlay_png", "probability_png", "rle", "contours", "image_png")
DEFAULT_INCLUDE = frozenset({"mask_png", "rle"})


@dataclass(frozen=True)
class Options:
    threshold: float | None = None  # None: the calibrated threshold from the model's metadata
    include: frozenset[str] = field(default=DEFAULT_INCLUDE)


def parse_threshold(text: str | None) -> float | None:
    """A pixel probability cut strictly between 0 and 1; blank means the model's own."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:  # also false for NaN
        raise ApiError(400, "invalid_parameter", f"threshold must be a number between 0 and 1 (exclusive), "
                                                 f"got {text[:40]!r}")
    return value


def parse_include(text: str | None) -> frozenset[str]:
    """A comma list of optional fields; absent means the default, empty means none."""
    if text is None:
        return DEFAULT_INCLUDE
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names.difference(OPTIONAL_FIELDS))
    if unknown:
        raise ApiError(400, "invalid_parameter", f"unknown include value(s) {', '.join(unknown)[:200]}; "
                                                 f"choose from {', '.join(OPTIONAL_FIELDS)}")
    return frozenset(names)


def _value(request: Request, name: str) -> str | None:
    """A form field wins over the query string (a raw image body can only use the query string)."""
    if name in request.form:
        return request.form[name]
    return request.args.get(name)


def request_options(request: Request) -> Options:
    return Options(threshold=parse_threshold(_value(request, "threshold")),
                   include=parse_include(_value(request, "include")))
