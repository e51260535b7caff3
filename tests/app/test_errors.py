"""app/errors.py's ERRORS is the one table of error codes: model/'s codes, docs/api.md and the OpenAPI text agree."""

from __future__ import annotations

import re

import pytest

from app.errors import ERRORS, HTTP_ERROR_CODES, ApiError, status_of
from app.openapi import error_description
from model import errors as model_errors
from tests.conftest import ROOT


def image_error_classes() -> list[type[model_errors.ImageError]]:
    found, todo = [], [model_errors.ImageError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not model_errors.ImageError:
            found.append(cls)
    return found


def documented_errors() -> dict[str, int]:
    """(code -> status) from the table under docs/api.md's '## Errors' heading."""
    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert rows, "docs/api.md has no error table"
    codes = [code for _, code in rows]
    assert len(codes) == len(set(codes)), "a code is listed twice in docs/api.md"
    return {code: int(status) for status, code in rows}


def test_every_model_error_has_its_own_code_in_the_table():
    classes = image_error_classes()
    assert len(classes) >= 6
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), "two model errors share a code"
    for cls in classes:
        assert cls.code in ERRORS, f"{cls.__name__}.code {cls.code!r} has no status in app/errors.py ERRORS"
        assert 400 <= status_of(cls.code) < 500, f"{cls.code} is the client's problem, so a 4xx"
    assert not hasattr(model_errors.ImageError("x"), "status"), "model/ errors carry no HTTP status"


def test_docs_table_matches_the_error_table():
    assert documented_errors() == {code: error.status for code, error in ERRORS.items()}


def test_openapi_lists_every_code_under_its_status():
    for code, error in ERRORS.items():
        assert re.search(rf"(^|, ){code} \(", error_description(error.status)), code
    assert error_description(415).startswith("unsupported_media_type (")


def test_werkzeug_statuses_map_to_codes_of_the_same_status():
    for status, code in HTTP_ERROR_CODES.items():
        assert status_of(code) == status


def test_api_error_takes_its_status_from_the_table():
    assert ApiError("too_many_images", "m").status == 400
    assert ApiError("request_timeout", "m").status == 503
    with pytest.raises(KeyError):
        ApiError("no_such_code", "m")


def test_model_errors_answer_with_the_tables_status(client):
    response = client.post("/predict", data=b"GIF89a" + b"\0" * 40, content_type="image/gif")
    body = response.get_json()
    assert (response.status_code, body["error"]["code"]) == (415, "unsupported_image_format")
