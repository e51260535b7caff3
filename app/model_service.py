"""The process's one Segmenter, and whether it is ready to serve.

The metadata and the weights' sha256 are checked as soon as the service is created, so a missing or
damaged model stops start-up at once with a message naming the file. Loading and the warm-up inference
(which traces and XLA-compiles the network: seconds) run then too, or on a background thread when
NERVE_MODEL_LOADING=background; until they finish `ready` is false, /readyz answers 503 and predictions
answer 503 `model_not_ready`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from app.errors import ApiError
from model.artifact import load_metadata, verify_weights
from model.segmenter import Segmenter

logger = logging.getLogger(__name__)


class ModelService:
    def __init__(self, model_dir: Path, runtime: str = "auto", threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.runtime = runtime
        self.threads = threads
        self.metadata = load_metadata(self.model_dir)
        verify_weights(self.model_dir, self.metadata)
        self.failure: str | None = None
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
            except Exception as exc:  # the process stays up so that /readyz can say why it is not ready
                self.failure = str(exc)
                logger.exception("model could not be loaded")

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
        if self.failure:
            return f"the model failed to load: {self.failure}"
        return "the model is still loading; retry shortly"
