"""Run the shipped U-Net through onnxruntime when an up-to-date ONNX export sits beside it.

Why: on the 2-core target onnxruntime runs a pass of this network faster than TensorFlow's XLA, and a
process that serves through it never imports TensorFlow, which saves start-up time and memory (the
measurements: docs/performance.md). `unet.keras` stays the canonical artifact: `unet.onnx` is derived from it by
`python -m model.onnx_export`, stamped with the sha256 of the `.keras` file it came from, and is used only
while that stamp matches metadata.json, so an export left over from an older model is never served.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from model.artifact import ModelArtifactError

ONNX_NAME = "unet.onnx"
#: Key of the ONNX model property that records which `.keras` file (its sha256) the export came from.
SOURCE_KEY = "source_keras_sha256"


class OnnxUnusable(ModelArtifactError):
    """`unet.onnx` is missing, unloadable, stale, or onnxruntime is absent; the message says which."""


def onnx_forward(model_dir: Path, metadata: dict, threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """One pass of the network as a callable: (N, h, w, 1) normalised float32 -> (N, h, w) probabilities.

    Raises OnnxUnusable unless `model_dir/unet.onnx` loads and was exported from the weights metadata.json
    names. `threads` bounds onnxruntime's pool as TF_NUM_INTRAOP_THREADS bounds TensorFlow's (the cores the
    gunicorn workers share); its threads do not spin while idle, so a quiet worker leaves its core to the other.
    """
    path = Path(model_dir) / ONNX_NAME
    if not path.is_file():
        raise OnnxUnusable(f"{path} does not exist (make it with: python -m model.onnx_export)")
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxUnusable("onnxruntime is not installed") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")

    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for damaged files
        raise OnnxUnusable(f"{path}: cannot be loaded by onnxruntime: {exc}") from None
    stamp = session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)
    if stamp != metadata["weights"]["sha256"]:
        raise OnnxUnusable(
            f"{path} was exported from other weights (sha256 {stamp}; metadata.json names "
            f"{metadata['weights']['sha256']}): export it again"
        )
    name = session.get_inputs()[0].name

    # onnxruntime's arena keeps the activations of the largest batch it has run for good (a loop's chunk of
    # frames: hundreds of MB per worker). Runs of more than one frame and its mirror give that memory back when
    # they end; a single frame keeps the arena, which makes it faster than plain allocation (docs/performance.md).
    shrink = ort.RunOptions()
    shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def forward(x: np.ndarray) -> np.ndarray:
        run_options = shrink if len(x) > 2 else None
        return session.run(None, {name: np.ascontiguousarray(x, np.float32)}, run_options)[0][..., 0]

    return forward
