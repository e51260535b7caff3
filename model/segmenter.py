"""Load the model once and predict through one compiled call.

`model.predict()` costs ~100 ms per frame in Keras' generic loop; a traced, XLA-compiled call of the same
network ~15 ms. The Segmenter is the only way training's evaluation and the app obtain predictions, so a
served mask is exactly the evaluated one.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from model.artifact import MODEL_DIR, ModelArtifactError, load_metadata, verify_weights
from model.cine import smooth_maps
from model.postprocessing import PostprocessConfig, Prediction, postprocess
from model.preprocessing import InputSpec, to_model_batch

#: Most frames per compiled call, bounding memory for long batches and cine loops. Results do not depend on
#: it: a frame's output is bitwise the same alone or in a batch (tested).
CHUNK = 32


class Segmenter:
    """A trained U-Net with its pre- and postprocessing."""

    def __init__(self, model: keras.Model, metadata: dict) -> None:
        self.model = model
        self.metadata = metadata
        self.spec = InputSpec.from_metadata(metadata)
        self.post = PostprocessConfig.from_metadata(metadata)
        self.tta_hflip = "hflip" in metadata["postprocessing"].get("tta", [])
        self._forward = self._compile()

    @classmethod
    def load(cls, model_dir: str | Path = MODEL_DIR, *, verify: bool = True) -> Segmenter:
        """Load `unet.keras` + `metadata.json` from a folder; sha256-checked unless verify=False."""
        model_dir = Path(model_dir)
        metadata = load_metadata(model_dir)
        weights = verify_weights(model_dir, metadata) if verify else model_dir / metadata["weights"]["file"]
        try:
            model = keras.models.load_model(weights, compile=False)
        except Exception as exc:  # Keras raises several types for damaged archives
            raise ModelArtifactError(f"{weights}: model cannot be loaded: {exc}") from None
        return cls(model, metadata)

    def _compile(self):
        """The forward pass (with flip TTA when the metadata asks for it) as one compiled call."""
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

    def predict_sequence(self, grays: list[np.ndarray], threshold: float | None = None,
                         window: int = 1) -> list[Prediction]:
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
