"""Check that weights trained under one Keras backend predict the same under another.

Training may run on a GPU machine under JAX or PyTorch; serving runs under TensorFlow on a CPU. On the
training machine:

    python -m training.crosscheck save --model runs/x/final/best.keras --data CACHE.npz --out check.npz

stores some frames' network inputs and the probabilities that backend computed; then, under TensorFlow:

    python -m training.crosscheck compare --model runs/x/final/best.keras --check check.npz

recomputes them and reports the largest difference and how many pixels change side of 0.5 (exit 1 above
--tolerance). No TTA and no postprocessing: this compares the networks alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def network_outputs(model_path: Path, inputs: np.ndarray) -> np.ndarray:
    import keras

    model = keras.models.load_model(model_path, compile=False)
    return np.concatenate([np.asarray(model.predict_on_batch(inputs[i : i + 32])) for i in range(0, len(inputs), 32)])[
        ..., 0
    ]


def save(args: argparse.Namespace) -> int:
    import keras

    from training.cache import load_cache

    model = keras.models.load_model(args.model, compile=False)
    _, height, width, _ = model.input_shape
    data = load_cache(args.data, height, width)
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(len(data), size=min(args.frames, len(data)), replace=False))
    images = data.images[chosen]
    inputs = ((images - images.mean()) / images.std())[..., None].astype(np.float32)
    outputs = network_outputs(args.model, inputs)
    np.savez_compressed(args.out, inputs=inputs, outputs=outputs, backend=keras.backend.backend())
    print(f"{args.out}: {len(inputs)} frames under {keras.backend.backend()}")
    return 0


def compare(args: argparse.Namespace) -> int:
    import keras

    saved = np.load(args.check)
    outputs = network_outputs(args.model, saved["inputs"])
    diff = np.abs(outputs - saved["outputs"])
    flipped = int(((outputs >= 0.5) != (saved["outputs"] >= 0.5)).sum())
    report = {
        "frames": len(outputs),
        "trained_backend": str(saved["backend"]),
        "this_backend": keras.backend.backend(),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "pixels_flipped_at_0.5": flipped,
        "pixels": int(outputs.size),
    }
    print(json.dumps(report, indent=2))
    return 0 if report["max_abs_diff"] <= args.tolerance else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.crosscheck", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="record inputs and this backend's outputs")
    s.add_argument("--model", type=Path, required=True)
    s.add_argument("--data", type=Path, required=True, help="a training.cache .npz")
    s.add_argument("--frames", type=int, default=64)
    s.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare", help="recompute under this backend and compare")
    c.add_argument("--model", type=Path, required=True)
    c.add_argument("--check", type=Path, required=True)
    c.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed probability difference")
    args = p.parse_args(argv)
    return save(args) if args.command == "save" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
