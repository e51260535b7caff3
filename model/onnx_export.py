"""`python -m model.onnx_export [--model-dir DIR]`: derive `unet.onnx` from the verified `unet.keras`.

The export is stamped with the `.keras` file's sha256 (model/onnx_serving.py serves it only while that
matches metadata.json). It is made where the service is deployed (the Dockerfile, `make onnx`) rather than
committed: it is a second copy of the weights that can always be rebuilt from the canonical one. Needs
tf2onnx and onnx (requirements.txt), which serving (requirements-serve.txt) does not.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from model.artifact import METADATA_NAME, MODEL_DIR, ModelArtifactError, load_metadata, verify_weights
from model.onnx_serving import ONNX_NAME, SOURCE_KEY


def export_onnx(model_dir: Path = MODEL_DIR) -> Path:
    """Write `model_dir/unet.onnx` from `model_dir/unet.keras` (replaced atomically); returns its path."""
    import keras
    import onnx

    model_dir = Path(model_dir)
    metadata = load_metadata(model_dir)
    weights = verify_weights(model_dir, metadata)
    model = keras.models.load_model(weights, compile=False)
    height, width = metadata["input"]["height"], metadata["input"]["width"]
    model(np.zeros((1, height, width, 1), np.float32))  # Keras exports only a model that has been called
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / ONNX_NAME
        model.export(str(raw), format="onnx", verbose=False)
        proto = onnx.load(str(raw))
    onnx.helper.set_model_props(
        proto, {SOURCE_KEY: metadata["weights"]["sha256"], "model_version": str(metadata.get("version", "0"))}
    )
    target = model_dir / ONNX_NAME
    partial = target.with_name(ONNX_NAME + ".partial")
    onnx.save(proto, str(partial))
    partial.replace(target)
    return target


def export_copy(model_dir: Path, target: Path) -> Path:
    """Copy a model folder's artifact (metadata.json and the weights it names) to `target` and export it
    there, as the Dockerfile's export stage does; for tests and benchmarks that must not write into model/."""
    target.mkdir(parents=True, exist_ok=True)
    metadata = load_metadata(model_dir)
    for name in (METADATA_NAME, metadata["weights"]["file"]):
        shutil.copy2(Path(model_dir) / name, target / name)
    export_onnx(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.onnx_export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=MODEL_DIR,
        help="folder with unet.keras and metadata.json (default: the shipped model)",
    )
    args = parser.parse_args(argv)
    try:
        path = export_onnx(args.model_dir)
    except ModelArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"error: {exc.name or exc} is not installed; pip install -r requirements.txt", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
