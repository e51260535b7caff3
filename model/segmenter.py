"""The network's forward pass, the input spec and the post-processing config, put together as one Segmenter.

A Segmenter is built from typed parts: a forward function (one pass of the network on a normalised batch,
from Keras or onnxruntime), the `InputSpec` and the `PostprocessConfig`. `Segmenter.load` builds one from a
model folder (metadata.json checked against its schema, weights sha256-checked) and runs the network through
onnxruntime when an up-to-date `unet.onnx` sits beside `unet.keras` (model/onnx_serving.py), through Keras
otherwise; why that order: docs/performance.md. Training builds one from the model it has just trained
(`Segmenter.from_keras`). It is the only way training's evaluation, the CLIs and the app obtain
predictions, so with the same files a served mask is exactly the evaluated one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.artifact import METADATA_NAME, MODEL_DIR, ModelArtifactError, load_metadata, verify_weights
from model.cine import smooth_maps
from model.onnx_serving import ONNX_NAME, OnnxUnusable, onnx_forward
from model.postprocessing import PostprocessConfig, Prediction, postprocess
from model.preprocessing import InputSpec, to_model_batch
from model.quality import QualityEstimator

if TYPE_CHECKING:  # importing Keras imports TensorFlow (slow, and large in memory): only the Keras path pays for it
    import keras

logger = logging.getLogger(__name__)

#: One pass of the network: (N, h, w, 1) normalised float32 inputs -> (N, h, w) probabilities.
Forward = Callable[[np.ndarray], np.ndarray]

#: Most frames per compiled call, bounding memory for long batches and cine loops. Results do not depend on
#: it: a frame's output is bitwise the same alone or in a batch (tested).
CHUNK = 16
#: "auto": onnxruntime when `unet.onnx` is usable, else Keras; the other two insist on one.
RUNTIMES = ("auto", "onnxruntime", "keras")


@dataclass(frozen=True)
class ModelInfo:
    """Which weights answer: name, version and sha256, as the API reports them."""

    name: str
    version: str
    sha256: str

    @classmethod
    def from_metadata(cls, metadata: Mapping) -> ModelInfo:
        return cls(
            name=metadata.get("name", "unet"),
            version=metadata.get("version", "0"),
            sha256=metadata["weights"]["sha256"],
        )

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


class Segmenter:
    """A U-Net's forward pass with its pre- and postprocessing."""

    def __init__(
        self,
        forward: Forward,
        spec: InputSpec,
        post: PostprocessConfig,
        *,
        runtime: str = "keras",
        metadata: Mapping | None = None,
        quality: QualityEstimator | None = None,
    ) -> None:
        """`metadata` is the artifact's metadata.json when the Segmenter comes from a model folder (`load`);
        it gives `info`. A Segmenter built from a model in memory has none. With a `quality` estimator every
        Prediction carries its assessment (expected Dice, reliable); without one (older model folders) none."""
        self.forward = forward
        self.spec = spec
        self.post = post
        self.runtime = runtime
        self.metadata = metadata
        self.quality = quality

    @classmethod
    def from_keras(cls, model: keras.Model, spec: InputSpec, post: PostprocessConfig) -> Segmenter:
        """A Segmenter on a Keras model in memory (training's held-out folds), compiled for its backend."""
        return cls(keras_forward(model, spec), spec, post, runtime="keras")

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
        spec, post = InputSpec.from_metadata(metadata), PostprocessConfig.from_metadata(metadata)
        try:
            quality = QualityEstimator.from_metadata(metadata)
        except ValueError as exc:
            raise ModelArtifactError(f"{model_dir / METADATA_NAME}: {exc}") from None
        if runtime != "keras":
            try:
                forward = onnx_forward(model_dir, metadata, threads)
                return cls(forward, spec, post, runtime="onnxruntime", metadata=metadata, quality=quality)
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
        return cls(keras_forward(model, spec), spec, post, runtime="keras", metadata=metadata, quality=quality)

    def tta_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, h, w, 1) normalised inputs -> the frames' maps and their mirrors' maps (flipped back), both
        (N, h, w), before averaging; the second is None when the config asks for no flip TTA.

        The frames and their mirrors go through the network in one call (one pass over the weights).
        """
        if not self.post.tta_hflip:
            return np.asarray(self.forward(batch)), None
        both = np.asarray(self.forward(np.concatenate([batch, batch[:, :, ::-1]])))
        return both[: len(batch)], both[len(batch) :, :, ::-1]

    def pass_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, h, w, 1) normalised inputs -> the plain and the mirror pass's (N, h, w) maps at model resolution,
        in chunks; without flip TTA both are the one pass. The quality estimate compares the two."""
        plain = np.empty(batch.shape[:3], np.float32)
        mirror = np.empty(batch.shape[:3], np.float32)
        for start in range(0, len(batch), CHUNK):
            one, other = self.tta_maps(batch[start : start + CHUNK])
            plain[start : start + len(one)] = one
            mirror[start : start + len(one)] = one if other is None else other
        return plain, mirror

    def probability_maps(self, batch: np.ndarray) -> np.ndarray:
        """(N, h, w, 1) normalised inputs -> (N, h, w) probabilities at model resolution (TTA averaged)."""
        return average(*self.pass_maps(batch), self.post.tta_hflip)

    def predict_many(self, grays: list[np.ndarray], threshold: float | None = None) -> list[Prediction]:
        """Grayscale [0, 1] images of any sizes -> one Prediction each, at each image's own size."""
        plain, mirror = self.pass_maps(to_model_batch(grays, self.spec))
        return list(self._postprocessed(average(plain, mirror, self.post.tta_hflip), plain, mirror, grays, threshold))

    def predict_sequence(
        self, grays: list[np.ndarray], threshold: float | None = None, window: int = 1
    ) -> list[Prediction]:
        """The frames of one cine loop, in time order -> one Prediction each (iter_sequence, collected)."""
        return list(self.iter_sequence(grays, threshold, window))

    def iter_sequence(
        self, grays: list[np.ndarray], threshold: float | None = None, window: int = 1
    ) -> Iterator[Prediction]:
        """The frames of one cine loop, in time order -> one Prediction each, the model-resolution probability
        maps first averaged over `window` neighbouring frames (model/cine.py); window=1 equals predict_many.
        The quality estimate then compares the two passes smoothed alike, the map the mask was cut from.

        The network runs on the whole loop first (smoothing needs neighbours); the full-size maps and masks
        are then made one frame at a time, as the caller takes them, so that a caller that answers each frame
        before taking the next never holds a long loop's full-size maps at once.
        """
        plain, mirror = self.pass_maps(to_model_batch(grays, self.spec))
        maps = smooth_maps(average(plain, mirror, self.post.tta_hflip), window)
        if window > 1 and self.quality is not None:
            plain, mirror = smooth_maps(plain, window), smooth_maps(mirror, window)
        return self._postprocessed(maps, plain, mirror, grays, threshold)

    def _postprocessed(
        self,
        maps: np.ndarray,
        plain: np.ndarray,
        mirror: np.ndarray,
        grays: list[np.ndarray],
        threshold: float | None,
    ) -> Iterator[Prediction]:
        for n, gray in enumerate(grays):
            prediction = postprocess(maps[n], gray.shape[0], gray.shape[1], self.post, threshold)
            if self.quality is not None:
                prediction.assessment = self.quality.assess(prediction, plain[n], mirror[n])
            yield prediction

    def predict(self, gray: np.ndarray, threshold: float | None = None) -> Prediction:
        return self.predict_many([gray], threshold)[0]

    def warm_up(self) -> None:
        """Trace and compile before the first request, so the first user does not pay for it."""
        self.predict(np.zeros((self.spec.height, self.spec.width), np.float32))

    @property
    def info(self) -> dict:
        """Name, version and sha256 as the API reports them; only a Segmenter loaded from a folder has them."""
        if self.metadata is None:
            raise ValueError("this Segmenter was built from a model in memory: it has no artifact identity")
        return ModelInfo.from_metadata(self.metadata).as_dict()


def average(plain: np.ndarray, mirror: np.ndarray, tta_hflip: bool) -> np.ndarray:
    """The flip TTA's answer: the mean of the two passes (the one pass itself without TTA)."""
    return 0.5 * (plain + mirror) if tta_hflip else plain


def keras_forward(model: keras.Model, spec: InputSpec) -> Forward:
    """One pass of a Keras model as one compiled call: traced and XLA-compiled under TensorFlow (what serving
    through Keras runs); Keras' own compiled predict step under JAX or PyTorch (training on a GPU machine)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return predict_step_forward(model)
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, spec.height, spec.width, 1], tf.float32)], jit_compile=True)
    def forward(x):
        return model(x, training=False)[..., 0]

    return lambda x: forward(x).numpy()


def predict_step_forward(model: keras.Model) -> Forward:
    """One pass through Keras' generic compiled predict step, on any backend."""
    return lambda x: model.predict_on_batch(x)[..., 0]
