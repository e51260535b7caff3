"""Per-frame inference time of the shipped model in each runtime we could serve it with.

    python benchmarks/bench_runtimes.py [--model-dir model] [--repeats 200]

Compares Keras `model.predict()`, a traced `tf.function`, the same with XLA (`jit_compile=True`, the
Segmenter's Keras path) and onnxruntime on the ONNX export (`python -m model.onnx_export`, made here in a
temporary copy of the model folder), for one frame of the model's input size: one pass, and the Segmenter's
frame + mirror (flip test-time augmentation) as served through each runtime; also the largest output
difference against Keras. Both runtimes get --threads threads. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.artifact import MODEL_DIR  # noqa: E402


def timed(fn, repeats: int) -> dict:
    for _ in range(5):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": round(float(np.percentile(samples, 50)), 2),
        "p95_ms": round(float(np.percentile(samples, 95)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="threads per runtime (default 2)")
    args = parser.parse_args()

    import os

    os.environ["TF_NUM_INTRAOP_THREADS"] = str(args.threads)
    import keras
    import tensorflow as tf

    from model.onnx_export import export_copy
    from model.segmenter import Segmenter

    seg = Segmenter.load(args.model_dir, runtime="keras")
    model = keras.models.load_model(Path(args.model_dir) / seg.metadata["weights"]["file"], compile=False)
    x = np.random.default_rng(0).standard_normal((1, seg.spec.height, seg.spec.width, 1)).astype(np.float32)
    reference = model(x, training=False).numpy()

    plain = tf.function(lambda t: model(t, training=False))
    xla = tf.function(lambda t: model(t, training=False), jit_compile=True)
    results = {
        "input": f"{seg.spec.height}x{seg.spec.width}",
        "keras_predict": timed(lambda: model.predict(x, verbose=0), max(20, args.repeats // 10)),
        "tf_function": timed(lambda: plain(x), args.repeats),
        "tf_function_xla": timed(lambda: xla(x), args.repeats),
        "segmenter_xla_with_flip_tta": timed(lambda: seg.probability_maps(x), args.repeats),
    }
    with tempfile.TemporaryDirectory() as tmp:  # sessions hold the graph in memory once created
        folder = export_copy(args.model_dir, Path(tmp) / "model")
        fast = Segmenter.load(folder, runtime="onnxruntime", threads=args.threads)
        one_pass = fast.forward  # one pass of the network, without the flip TTA
    results["onnxruntime"] = timed(lambda: one_pass(x), args.repeats)
    results["onnxruntime"]["max_abs_diff_vs_keras"] = float(np.abs(one_pass(x) - reference[..., 0]).max())
    results["segmenter_onnxruntime_with_flip_tta"] = timed(lambda: fast.probability_maps(x), args.repeats)
    results["segmenter_onnxruntime_with_flip_tta"]["max_abs_diff_vs_keras"] = float(
        np.abs(fast.probability_maps(x) - seg.probability_maps(x)).max()
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
