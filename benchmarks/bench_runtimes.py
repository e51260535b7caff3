"""Per-frame inference time of the shipped model in each runtime we could serve it with.

    python benchmarks/bench_runtimes.py [--model-dir model] [--repeats 200]

Compares Keras `model.predict()`, a traced `tf.function`, the same with XLA (`jit_compile=True`, what the
Segmenter uses) and onnxruntime on an ONNX export, for one frame of the model's input size, with and
without the flip test-time augmentation; also the maximum output difference against Keras. onnxruntime
and tf2onnx are optional (requirements-dev.txt); without them that row is skipped. Prints JSON.
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
    return {"p50_ms": round(float(np.percentile(samples, 50)), 2),
            "p95_ms": round(float(np.percentile(samples, 95)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    import tensorflow as tf

    from model.segmenter import Segmenter

    seg = Segmenter.load(args.model_dir)
    model = seg.model
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
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "unet.onnx"
            model.export(str(path), format="onnx", verbose=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        out = session.run(None, {name: x})[0]
        results["onnxruntime"] = timed(lambda: session.run(None, {name: x}), args.repeats)
        results["onnxruntime"]["max_abs_diff_vs_keras"] = float(np.abs(out - reference).max())
    except ImportError as exc:
        results["onnxruntime"] = f"skipped: {exc}"
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
