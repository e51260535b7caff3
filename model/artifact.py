"""Where the shipped model lives and how its integrity is checked.

`model/unet.keras` is the canonical artifact; `model/metadata.json` describes it (input format,
normalisation, calibrated threshold and min-area, provenance, figures) and carries its sha256, which the
service checks before serving, so a truncated or swapped file is refused at start-up. Every metadata.json
read or written is validated against `model/metadata.schema.json` (JSON Schema, with the jsonschema
library), so a missing or mistyped field is refused with the file and the field named, not met later as a
KeyError deep in serving.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator, ValidationError

MODEL_DIR = Path(__file__).resolve().parent
WEIGHTS_NAME = "unet.keras"
METADATA_NAME = "metadata.json"
SCHEMA_PATH = MODEL_DIR / "metadata.schema.json"


class ModelArtifactError(RuntimeError):
    """The model files are missing, damaged or inconsistent; the message says which and why."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_metadata(model_dir: Path = MODEL_DIR) -> dict:
    path = Path(model_dir) / METADATA_NAME
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelArtifactError(f"{path}: metadata file is missing") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelArtifactError(f"{path}: metadata cannot be read: {exc}") from None
    validate_metadata(metadata, path)
    return metadata


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def _describe(error: ValidationError) -> str:
    """One schema violation in words, naming the field by its dotted path."""
    where = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        missing = next(key for key in error.validator_value if key not in error.instance)
        field = f"{where}.{missing}" if where else missing
        return f"metadata lacks the required field '{field}'"
    return f"metadata field '{where or '(top level)'}' is invalid: {error.message}"


def validate_metadata(metadata: object, path: Path) -> None:
    """Raise ModelArtifactError naming `path` and the field when `metadata` does not fit the schema."""
    errors = sorted(_validator().iter_errors(metadata), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise ModelArtifactError(f"{path}: {_describe(errors[0])}")


def verify_weights(model_dir: Path, metadata: dict) -> Path:
    """Return the weights path after checking it exists and matches the recorded sha256."""
    weights = Path(model_dir) / metadata["weights"]["file"]
    if not weights.is_file():
        raise ModelArtifactError(f"{weights}: model weights file is missing")
    actual = sha256_file(weights)
    expected = metadata["weights"]["sha256"]
    if actual != expected:
        raise ModelArtifactError(
            f"{weights}: sha256 {actual} does not match metadata.json ({expected}); "
            "the file is damaged or belongs to another model"
        )
    return weights


def save_artifact(model, metadata: dict, model_dir: Path) -> dict:
    """Write `<model_dir>/unet.keras` and a metadata.json that records its sha256; returns the metadata.

    `metadata` must hold at least the 'input' and 'postprocessing' sections (model/metadata.schema.json); it
    is validated before metadata.json is written.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    weights = model_dir / WEIGHTS_NAME
    model.save(weights)
    metadata = dict(metadata)
    metadata["weights"] = {
        "file": WEIGHTS_NAME,
        "sha256": sha256_file(weights),
        "bytes": weights.stat().st_size,
        "parameters": int(model.count_params()),
    }
    write_metadata(metadata, model_dir)
    return metadata


def write_metadata(metadata: dict, model_dir: Path) -> None:
    """Validate and write `<model_dir>/metadata.json` (e.g. after adding the quality estimate to it; the
    weights and their sha256 stay as they are)."""
    path = Path(model_dir) / METADATA_NAME
    validate_metadata(metadata, path)
    path.write_text(json.dumps(metadata, indent=2) + "\n")
