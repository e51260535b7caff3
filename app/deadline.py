"""A per-request time budget (NERVE_REQUEST_TIMEOUT), checked between the stages of a prediction.

Why here and not only in gunicorn: a gthread worker's heartbeat comes from its main loop, which keeps
running while a request thread works, so gunicorn's `timeout` never stops one slow request; it only
restarts a worker that has stopped answering altogether (the hard backstop). Decoding runs in a
helper process that is killed when the remaining budget runs out (model/decode/isolated.py), since a
decoder's cost follows the file's structure, which an attacker controls. A network call cannot be
interrupted, but its cost is bounded by the pixel limits, so for the other stages the budget is checked
before each one (inference, encoding, and between a batch's frames and groups): a request over budget stops
with a clean `503 request_timeout` instead of running on and holding a thread, overshooting by at most one
network call or one encoding.
"""

from __future__ import annotations

import time

from flask import current_app, g, has_request_context

from app.errors import ApiError

#: The clock the budget is measured on; a module attribute so that tests can move time forward.
clock = time.monotonic


class Deadline:
    """The moment a request's budget runs out; `check` raises once it has."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = clock() + seconds

    def remaining(self) -> float | None:
        """Seconds left (never below 0), or None when the budget never runs out."""
        if self.seconds == float("inf"):
            return None
        return max(self.expires - clock(), 0.0)

    def exceeded(self, when: str) -> ApiError:
        """The 503 request_timeout error, saying `when` the request was stopped."""
        return ApiError(
            "request_timeout",
            f"the request took longer than its {self.seconds:g} s budget and was stopped {when}; send fewer or "
            "smaller images, or retry when the service is less busy",
        )

    def check(self, next_stage: str) -> None:
        """Raise 503 request_timeout when the budget is spent, naming the stage that would have run next."""
        if clock() > self.expires:
            raise self.exceeded(f"before {next_stage}")


#: Used outside a request (the CLI and tests calling analyse directly): never expires.
NO_DEADLINE = Deadline(float("inf"))


def start_request_deadline() -> None:
    """before_request hook: the budget runs from the moment the request reaches the app."""
    g.deadline = Deadline(current_app.config["REQUEST_TIMEOUT"])


def request_deadline() -> Deadline:
    """This request's deadline, or one that never expires outside a request."""
    if has_request_context() and "deadline" in g:
        return g.deadline
    return NO_DEADLINE
