"""The OpenAPI 3.1 description served at /openapi.json.

Written by hand as the contract clients rely on; tests/app/test_openapi.py validates real responses against
these schemas, so the document cannot drift from what the service does. Limits come from the running
configuration.
"""

from __future__ import annotations

from app.errors import ERRORS, codes_with_status
from app.options import DEFAULT_INCLUDE, OPTIONAL_FIELDS
from app.request_ids import VALID as VALID_REQUEST_ID
from app.uploads import RAW_BODY_TYPES
from model.cine import LOOP_PIXEL_FACTOR, MAX_WINDOW
from model.decode.formats import ACCEPTED

REQUEST_ID_PATTERN = f"^{VALID_REQUEST_ID.pattern}$"
PNG_BASE64 = {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "request_id"],
                "additionalProperties": False,
                "properties": {
                    "code": {
                        "type": "string",
                        "pattern": "^[a-z][a-z0-9_]*$",
                        "description": "Stable snake_case code for programs to branch on.",
                    },
                    "message": {"type": "string", "description": "Explanation for people; wording may change."},
                    "request_id": {
                        "type": "string",
                        "pattern": REQUEST_ID_PATTERN,
                        "description": "The request's id, as in the X-Request-ID response header: the client's own "
                        "X-Request-ID when it was valid, else one the service made. Quote it when reporting an error.",
                    },
                },
            }
        },
    },
    "Runtime": {
        "enum": ["onnxruntime", "keras"],
        "description": "What runs the network: onnxruntime on the ONNX export of the weights when the deployment "
        "has an up-to-date one (the container does), else Keras on TensorFlow. Both run the same "
        "weights, and the model card records how closely their probabilities and masks agree.",
    },
    "ModelInfo": {
        "type": "object",
        "required": ["name", "version", "sha256"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
    "PredictResult": {
        "type": "object",
        "required": [
            "nerve_present",
            "nerve_probability",
            "mask_area_px",
            "bbox",
            "width",
            "height",
            "model",
            "timing_ms",
        ],
        "additionalProperties": False,
        "properties": {
            "nerve_present": {"type": "boolean", "description": "True exactly when the returned mask is not empty."},
            "nerve_probability": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "Probability that a nerve is in view, derived from the probability map: its "
                "peak at model resolution (this model has no separate presence head). A "
                "high value with an empty mask means the region was below the min-area gate.",
            },
            "expected_dice": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "The model's estimate of the Dice between the returned mask and an expert's outline "
                "of the same frame; for an empty mask, the estimated probability that no nerve is in view. Computed "
                "on the mask and map actually returned (fitted at the calibrated threshold). Absent when the model "
                "folder has no quality estimator.",
            },
            "reliable": {
                "type": "boolean",
                "description": "expected_dice >= the model's cut (metadata.json quality.cut): false means "
                "'uncertain: do not rely on this outline'. Absent with expected_dice.",
            },
            "mask_area_px": {"type": "integer", "minimum": 0, "description": "Nerve pixels in the mask."},
            "bbox": {
                "description": "[x, y, w, h] of the mask in input pixels; null when the mask is empty.",
                "oneOf": [
                    {"type": "null"},
                    {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 4, "maxItems": 4},
                ],
            },
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "mask_png": {**PNG_BASE64, "description": "8-bit grayscale PNG, width x height, 0 or 255."},
            "rle": {
                "type": "string",
                "pattern": "^([0-9]+ [0-9]+( [0-9]+ [0-9]+)*)?$",
                "description": "Kaggle RLE of the mask: 1-indexed, column-major 'start length' pairs; "
                "empty string when the mask is empty.",
            },
            "contours": {
                "description": "Outer boundary of each mask component, as [x, y] input-pixel points.",
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                },
            },
            "overlay_png": {**PNG_BASE64, "description": "RGB PNG: the image with the mask filled and outlined."},
            "probability_png": {
                **PNG_BASE64,
                "description": "8-bit grayscale PNG, width x height, of the pixel "
                "probabilities x 255 (rounded): re-threshold it at "
                "t x 255 without a new request.",
            },
            "image_png": {**PNG_BASE64, "description": "The input as an 8-bit grayscale PNG (for display)."},
            "model": {"$ref": "#/components/schemas/ModelInfo"},
            "timing_ms": {
                "type": "object",
                "required": ["decode", "infer", "total"],
                "additionalProperties": False,
                "description": "Server time in ms. infer covers resizing, the network and postprocessing; in "
                "a batch it is the shared model call divided evenly. total = decode + infer + "
                "encoding the outputs.",
                "properties": {k: {"type": "number", "minimum": 0} for k in ("decode", "infer", "total")},
            },
        },
    },
    "LoopResult": {
        "type": "object",
        "required": ["frame_count", "smoothing_window", "frames", "timing_ms"],
        "additionalProperties": False,
        "description": "frames=all: every frame of a multi-frame file (TIFF pages, DICOM frames, MP4/AVI frames).",
        "properties": {
            "frame_count": {"type": "integer", "minimum": 1},
            "smoothing_window": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_WINDOW,
                "description": "Frames in the centred moving average of the probability maps (1 = no smoothing).",
            },
            "frames": {"type": "array", "items": {"$ref": "#/components/schemas/LoopFrame"}},
            "timing_ms": {
                "type": "object",
                "required": ["decode", "infer", "total"],
                "additionalProperties": False,
                "description": "Server time for the whole loop, ms.",
                "properties": {k: {"type": "number", "minimum": 0} for k in ("decode", "infer", "total")},
            },
        },
    },
    "BatchResponse": {
        "type": "object",
        "required": ["results"],
        "additionalProperties": False,
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "oneOf": [{"$ref": "#/components/schemas/PredictResult"}, {"$ref": "#/components/schemas/Error"}]
                },
            }
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "additionalProperties": False,
        "properties": {"status": {"const": "ok"}},
    },
    "Ready": {
        "type": "object",
        "required": ["status", "model", "runtime"],
        "additionalProperties": False,
        "properties": {
            "status": {"const": "ready"},
            "model": {"$ref": "#/components/schemas/ModelInfo"},
            "runtime": {"$ref": "#/components/schemas/Runtime"},
        },
    },
    "ModelCard": {
        "type": "object",
        "required": ["model", "runtime", "metadata", "limits"],
        "additionalProperties": False,
        "properties": {
            "model": {"$ref": "#/components/schemas/ModelInfo"},
            "runtime": {"$ref": "#/components/schemas/Runtime"},
            "metadata": {
                "type": "object",
                "description": "The model's metadata.json without the library versions it records: "
                "input format, normalisation, postprocessing, provenance and, when "
                "training recorded them, model-card figures.",
            },
            "limits": {
                "type": "object",
                "required": ["max_upload_bytes", "max_pixels", "max_batch", "max_frames"],
                "additionalProperties": False,
                "properties": {
                    k: {"type": "integer", "minimum": 1}
                    for k in ("max_upload_bytes", "max_pixels", "max_batch", "max_frames")
                },
            },
        },
    },
}


#: A loop's frame: exactly a single-frame result plus its 0-based index in the file.
SCHEMAS["LoopFrame"] = {
    **SCHEMAS["PredictResult"],
    "required": ["frame", *SCHEMAS["PredictResult"]["required"]],
    "properties": {
        "frame": {"type": "integer", "minimum": 0, "description": "0-based index in the file."},
        **SCHEMAS["PredictResult"]["properties"],
    },
}


def _json(ref: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def error_description(status: int) -> str:
    """The codes a status answers with, from app/errors.py's table (the one place a code gets its status)."""
    return ", ".join(f"{code} ({ERRORS[code].when})" for code in codes_with_status(status))


def _errors(*statuses: int) -> dict:
    return {str(s): _json("Error", error_description(s)) for s in statuses}


def _parameters() -> list[dict]:
    include = ",".join(sorted(DEFAULT_INCLUDE))
    return [
        {
            "name": "threshold",
            "in": "query",
            "required": False,
            "description": "Pixel probability cut (a pixel is nerve when p >= threshold), strictly between 0 "
            "and 1; default: the calibrated value in the model's metadata. May also be a form "
            "field, which wins over the query string.",
            "schema": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        },
        {
            "name": "include",
            "in": "query",
            "required": False,
            "description": f"Comma list of optional fields from {', '.join(OPTIONAL_FIELDS)}; default "
            f"'{include}'; an empty value asks for none. May also be a form field.",
            "schema": {"type": "string"},
        },
    ]


def _loop_parameters(config: dict) -> list[dict]:
    return [
        {
            "name": "frames",
            "in": "query",
            "required": False,
            "description": f"'all': segment every frame of a multi-frame file as a cine loop (at most "
            f"{config['MAX_FRAMES']} frames and {LOOP_PIXEL_FACTOR} x the pixel limit in all; 413 "
            "too_many_frames above) and answer a LoopResult. Absent or 'first': the first frame "
            "only. May also be a form field.",
            "schema": {"type": "string", "enum": ["all", "first"]},
        },
        {
            "name": "smoothing",
            "in": "query",
            "required": False,
            "description": f"With frames=all: odd window, in frames, of the centred moving average of the "
            f"probability maps (1 = off, at most {MAX_WINDOW}); default "
            f"{config['CINE_SMOOTHING']} (NERVE_CINE_SMOOTHING). May also be a form field.",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW},
        },
    ]


def openapi_spec(config: dict) -> dict:
    image_part = {
        "type": "string",
        "contentMediaType": "application/octet-stream",
        "description": f"{ACCEPTED}. TIFF 8/16-bit or float; DICOM uncompressed, RLE or JPEG "
        "baseline; the first frame of a multi-frame file unless frames=all.",
    }
    form_fields = {"threshold": {"type": "string"}, "include": {"type": "string"}}
    limits = (
        f"Bodies over {config['MAX_CONTENT_LENGTH']} bytes and images over {config['MAX_PIXELS']} "
        "pixels are refused with 413."
    )
    secured = [{}, {"bearerAuth": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Brachial plexus nerve segmentation",
            "version": "1.0.0",
            "description": "Research use only, not a medical device. Finds the brachial plexus in neck "
            'ultrasound with a U-Net. Errors are always {"error": {"code", "message", "request_id"}}. Every '
            "answer carries X-Request-ID: the client's own when it is 1-128 characters of [A-Za-z0-9._-], else "
            "a new one.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Segment one image",
                    "description": "The image in multipart field `image`, or as the raw body with one of the "
                    f"Content-Types {', '.join(RAW_BODY_TYPES)}. " + limits,
                    "security": secured,
                    "parameters": _parameters() + _loop_parameters(config),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {
                                        "image": image_part,
                                        **form_fields,
                                        "frames": {"type": "string"},
                                        "smoothing": {"type": "string"},
                                    },
                                }
                            },
                            **{
                                mime: {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}
                                for mime in RAW_BODY_TYPES
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The prediction; with frames=all, one per frame.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/PredictResult"},
                                            {"$ref": "#/components/schemas/LoopResult"},
                                        ]
                                    }
                                }
                            },
                        },
                        **_errors(400, 401, 413, 415, 503),
                    },
                }
            },
            "/predict/batch": {
                "post": {
                    "summary": "Segment several images",
                    "description": f"Up to {config['MAX_BATCH']} files in multipart field `images`. Each file "
                    "gets a result or its own error object, in order; one bad file does not fail "
                    "the others. " + limits,
                    "security": secured,
                    "parameters": _parameters(),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["images"],
                                    "properties": {"images": {"type": "array", "items": image_part}, **form_fields},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json("BatchResponse", "One entry per file, in order."),
                        **_errors(400, 401, 413, 415, 503),
                    },
                }
            },
            "/healthz": {"get": {"summary": "The process is alive", "responses": {"200": _json("Health", "Alive.")}}},
            "/readyz": {
                "get": {
                    "summary": "The model is loaded and warmed up",
                    "responses": {"200": _json("Ready", "Ready to predict."), **_errors(503)},
                }
            },
            "/api/model": {
                "get": {
                    "summary": "Model identity, metadata, model-card figures and limits",
                    "responses": {"200": _json("ModelCard", "The served model."), **_errors(503)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics, summed over the server's workers",
                    "description": "Prometheus text format 0.0.4: requests, latency per stage and end to end, frames "
                    "answered by kind and reliability, upload sizes, model identity, worker readiness (docs/api.md, "
                    "Metrics). Absent (404) with NERVE_METRICS=0.",
                    "security": secured,
                    "responses": {
                        "200": {
                            "description": "The metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 document.", "content": {"application/json": {}}}},
                }
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required on the predict endpoints and /metrics only when NERVE_API_TOKEN is set.",
                }
            },
        },
    }
