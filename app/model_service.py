"""The process's one Segmenter, and whether it is ready to serve: a Flask extension.

`init_app(app)` creates the app's ModelService from its config (NERVE_MODEL_DIR, NERVE_RUNTIME,
NERVE_INFERENCE_THREADS, NERVE_MODEL_LOADING) and keeps it in `app.extensions`; `current_service()` and
`get_segmenter()` are the one way the blueprints reach it. The metadata and the weights' sha256 are checked
as soon as the service is created, so a missing or damaged model stops start-up at once with a message
naming the file. Loading and the warm-up inference (which traces and compiles the network) run then too, or
on a background thread when NERVE_MODEL_LOADING=background; until they finish `ready` is false, /readyz
answers 503 and predictions answer 503 `model_not_ready`. A failed background load says so in plain words;
the exception, which names files and library internals, goes to the log only.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from flask import Flask, current_app

from app.errors import ApiError
from model.artifact import load_metadata, verify_weights
from model.decode.isolated import decode_pool
from model.memory import return_large_buffers_to_the_system
from model.segmenter import Segmenter

logger = logging.getLogger(__name__)

#: The key of the app's ModelService in `app.extensions`.
EXTENSION = "model_service"


class ModelService:
    def __init__(self, model_dir: Path, runtime: str = "auto", threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.runtime = runtime
        self.threads = threads
        self.metadata = load_metadata(self.model_dir)
        verify_weights(self.model_dir, self.metadata)
        self.load_failed = False
        self._segmenter: Segmenter | None = None

    def load(self) -> None:
        """Load and warm up; raises ModelArtifactError if Keras cannot read the (verified) file."""
        segmenter = Segmenter.load(
            self.model_dir,
            verify=False,
            runtime=self.runtime,  # verified in __init__
            threads=self.threads,
        )
        segmenter.warm_up()
        self._segmenter = segmenter
        logger.info("model %s ready, running through %s", segmenter.info, segmenter.runtime)

    def load_in_background(self) -> threading.Thread:
        def run() -> None:
            try:
                self.load()
            except Exception:  # the process stays up so that /readyz can report the failure
                logger.exception("model could not be loaded")  # first: once /readyz says so, the log has why
                self.load_failed = True

        thread = threading.Thread(target=run, name="model-loader", daemon=True)
        thread.start()
        return thread

    @property
    def ready(self) -> bool:
        return self._segmenter is not None

    @property
    def segmenter(self) -> Segmenter:
        """The loaded Segmenter, or a 503 for the client while it is loading (or failed to load)."""
        if self._segmenter is None:
            raise ApiError("model_not_ready", self.not_ready_reason)
        return self._segmenter

    @property
    def not_ready_reason(self) -> str:
        if self.load_failed:
            return "the model failed to load; the service's log says why"
        return "the model is still loading; retry shortly"


def init_app(app: Flask) -> ModelService:
    """Create the app's ModelService from its config and load the model (now, or in the background)."""
    config = app.config
    return_large_buffers_to_the_system()
    if config["DECODE_ISOLATION"]:
        # The decoders' helper processes (model/decode/isolated.py) start while the model loads, so the first
        # request pays for neither.
        pool = decode_pool(config["DECODE_MEMORY_BYTES"])
        threading.Thread(target=pool.warm_up, name="decode-warm-up", daemon=True).start()
    service = ModelService(config["MODEL_DIR"], config["RUNTIME"], config["INFERENCE_THREADS"])
    if config["MODEL_LOADING"] == "background":
        service.load_in_background()
    else:
        service.load()
    app.extensions[EXTENSION] = service
    return service


def current_service() -> ModelService:
    """The current app's ModelService (in a request or app context)."""
    return current_app.extensions[EXTENSION]


def get_segmenter() -> Segmenter:
    """The current app's loaded Segmenter, or 503 model_not_ready while it is loading or failed to load."""
    return current_service().segmenter
