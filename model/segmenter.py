"""Load the model once and predict through one compiled call.

`model.predict()` costs ~100 ms per frame in Keras' generic loop; a traced, XLA-compiled call of the same
network ~12 ms, and onnxruntime on an ONNX export of it ~6 ms (docs/performance.md). `Segmenter.load`
therefore runs the network through onnxruntime when an up-to-date `unet.onnx` sits beside `unet.keras`
(model/onnx_serving.py) and through Keras otherwise. The Segmenter is the only way training's evaluation,
the CLIs and the app obtain predictions, so with the same files a served mask is exactly the evaluated one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.artifact import MODEL_DIR, ModelArtifactError, load_metadata, verify_weights
from model.cine import smooth_maps
from model.onnx_serving import ONNX_NAME, OnnxUnusable, onnx_forward
from model.postprocessing import PostprocessConfig, Prediction, postprocess
from model.preprocessing import InputSpec, to_model_batch

if TYPE_CHECKING:  # importing Keras imports TensorFlow (seconds, ~600 MB): only the Keras path pays for it
    import keras

logger = logging.getLogger(__name__)

#: Most frames per compiled call, bounding memory for long batches and cine loops. Results do not depend on
#: it: a frame's output is bitwise the same alone or in a batch (tested).
CHUNK = 32
#: "auto": onnxruntime when `unet.onnx` is usable, else Keras; the other two insist on one.
RUNTIMES = ("auto", "onnxruntime", "keras")


class Segmenter:
    """A trained U-Net with its pre- and postprocessing."""

    def __init__(
        self, model: keras.Model | None, metadata: dict, *, forward: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        """A Keras model (compiled here), or model=None and an onnxruntime `forward` from onnx_forward."""
        self.model = model
        self.metadata = metadata
        self.spec = InputSpec.from_metadata(metadata)
        self.post = PostprocessConfig.from_metadata(metadata)
        self.tta_hflip = tta_hflip(metadata)
        self.runtime = "keras" if forward is None else "onnxruntime"
        self._forward = self._compile() if forward is None else forward

    @classmethod
    def load(
        cls,
        model_dir: str | Path = MODEL_DIR,
        *,
        verify: bool = True,
        runtime: str = "auto",
        threads: int | None = None,
    ) -> Segmenter:
        """Load the model in a folder (`metadata.json`, `unet.keras`, optionally `unet.onnx`).

        The weights are sha256-checked unless verify=False. `runtime` is one of RUNTIMES; `threads` bounds
        onnxruntime's thread pool (None: every core).
        """
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
        model_dir = Path(model_dir)
        metadata = load_metadata(model_dir)
        weights = verify_weights(model_dir, metadata) if verify else model_dir / metadata["weights"]["file"]
        if runtime != "keras":
            try:
                return cls(None, metadata, forward=onnx_forward(model_dir, metadata, tta_hflip(metadata), threads))
            except OnnxUnusable as exc:
                if runtime == "onnxruntime":
                    raise
                # An export that is there but unusable (stale, damaged) deserves attention; none at all is normal.
                log = logger.warning if (model_dir / ONNX_NAME).exists() else logger.info
                log("running the model through Keras: %s", exc)
        import keras

        try:
            model = keras.models.load_model(weights, compile=False)
        except Exception as exc:  # Keras raises several types for damaged archives
            raise ModelArtifactError(f"{weights}: model cannot be loaded: {exc}") from None
        return cls(model, metadata)

    def _compile(self):
        """The forward pass (with flip TTA when the metadata asks for it) as one compiled call."""
        import keras

        if keras.backend.backend() == "tensorflow":
            return self._compile_tensorflow()
        return self._forward_any_backend

    def _compile_tensorflow(self):
        import tensorflow as tf

        model = self.model
        hflip = self.tta_hflip

        @tf.function(
            input_signature=[tf.TensorSpec([None, self.spec.height, self.spec.width, 1], tf.float32)],
            jit_compile=True,
        )
        def forward(x):
            if not hflip:
                return model(x, training=False)[..., 0]
            # Test-time augmentation: the frame and its mirror in one call (one pass over the weights).
            both = model(tf.concat([x, tf.reverse(x, [2])], axis=0), training=False)
            plain, mirrored = tf.split(both, 2, axis=0)
            return (0.5 * (plain + tf.reverse(mirrored, [2])))[..., 0]

        return forward

    def _forward_any_backend(self, x: np.ndarray) -> np.ndarray:
        """The same computation through Keras' own compiled predict step, for JAX or PyTorch (training on a
        GPU machine); serving runs on TensorFlow."""
        if not self.tta_hflip:
            return self.model.predict_on_batch(x)[..., 0]
        both = self.model.predict_on_batch(np.concatenate([x, x[:, :, ::-1]]))
        return (0.5 * (both[: len(x)] + both[len(x) :, :, ::-1]))[..., 0]

    def probability_maps(self, batch: np.ndarray) -> np.ndarray:
        """(N, h, w, 1) normalised inputs -> (N, h, w) probabilities at model resolution."""
        out = np.empty(batch.shape[:3], np.float32)
        for start in range(0, len(batch), CHUNK):
            part = batch[start : start + CHUNK]
            out[start : start + len(part)] = np.asarray(self._forward(part))
        return out

    def predict_many(self, grays: list[np.ndarray], threshold: float | None = None) -> list[Prediction]:
        """Grayscale [0, 1] images of any sizes -> one Prediction each, at each image's own size."""
        return self._postprocess_all(self.probability_maps(to_model_batch(grays, self.spec)), grays, threshold)

    def predict_sequence(
        self, grays: list[np.ndarray], threshold: float | None = None, window: int = 1
    ) -> list[Prediction]:
        """The frames of one cine loop, in time order -> one Prediction each, the model-resolution probability
        maps first averaged over `window` neighbouring frames (model/cine.py); window=1 equals predict_many."""
        maps = smooth_maps(self.probability_maps(to_model_batch(grays, self.spec)), window)
        return self._postprocess_all(maps, grays, threshold)

    def _postprocess_all(self, maps: np.ndarray, grays: list[np.ndarray], threshold: float | None) -> list[Prediction]:
        return [postprocess(m, g.shape[0], g.shape[1], self.post, threshold) for m, g in zip(maps, grays, strict=True)]

    def predict(self, gray: np.ndarray, threshold: float | None = None) -> Prediction:
        return self.predict_many([gray], threshold)[0]

    def warm_up(self) -> None:
        """Trace and compile before the first request, so the first user does not pay for it."""
        self.predict(np.zeros((self.spec.height, self.spec.width), np.float32))

    @property
    def info(self) -> dict:
        """Name, version and sha256 as the API reports them."""
        return {
            "name": self.metadata.get("name", "unet"),
            "version": self.metadata.get("version", "0"),
            "sha256": self.metadata["weights"]["sha256"],
        }


def tta_hflip(metadata: dict) -> bool:
    """Whether the metadata asks for flip test-time augmentation (the frame averaged with its mirror)."""
    return "hflip" in metadata["postprocessing"].get("tta", [])
