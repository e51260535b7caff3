"""Flask service that finds the brachial plexus in neck ultrasound: a page for people, a JSON API for programs.

`create_app()` is the factory gunicorn calls in each worker after the fork (TensorFlow does not survive a
fork, so gunicorn.conf.py never preloads): it reads the environment (app/config.py), checks and loads the
model once, and wires the page, page-endpoint and API blueprints, CSRF, security headers, JSON errors, the
per-request time budget (app/deadline.py), request ids (app/request_ids.py), and the metrics and access log
(app/metrics.py).
"""

from __future__ import annotations

import secrets

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from app import api, live, metrics, model_service, page_api, pages, request_ids
from app.config import settings_from_env
from app.deadline import start_request_deadline
from app.errors import register_json_errors
from app.security import add_security_headers
from app.uploads import InMemoryRequest


def create_app(config_overrides: dict | None = None) -> Flask:
    """Build the app; raises model.artifact.ModelArtifactError when the model is missing or damaged."""
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.request_class = InMemoryRequest
    app.json.sort_keys = False  # keep fields in the documented order
    app.config.update(settings_from_env(), **metrics.settings_from_env())
    app.config.update(SESSION_COOKIE_SAMESITE="Lax")
    app.config.update(config_overrides or {})
    # The session cookie also carries the pages' CSRF tokens (flask-wtf keeps them in the session).
    app.config.update(SESSION_COOKIE_SECURE=app.config["HTTPS"])
    if app.debug:  # Flask turns it on from FLASK_DEBUG; its reloader and tracebacks have no place here
        app.logger.warning("FLASK_DEBUG/DEBUG is set: ignored, this service never runs in debug mode")
        app.debug = False
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        app.logger.warning(
            "NERVE_SECRET_KEY is not set: using a random key, so page forms stop working after "
            "a restart and across processes that do not share it"
        )

    model_service.init_app(app)
    # Before CSRFProtect, whose before_request check may refuse the request: it is then timed and logged too.
    metrics.init_app(app)
    request_ids.init_app(app)

    csrf = CSRFProtect(app)
    csrf.exempt(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(live.bp)
    app.register_blueprint(page_api.bp)
    register_json_errors(app)
    app.before_request(start_request_deadline)
    app.after_request(add_security_headers)
    return app
