"""Cine-loop throughput: frames per second for POST /predict with frames=all, on this machine's cores.

    python benchmarks/bench_cine.py [--model-dir model] [--frames 120] [--repeats 3]

A synthetic loop (the tests' drifting phantom, never real frames) is encoded as a multi-page TIFF and as a
multi-frame DICOM at the scanner's 580 x 420 and at the shared data's 256 x 186, and sent through Flask's
test client (no network: the figure is the service's own work) with the default include (`mask_png,rle`)
and with what the page asks for (`image_png,mask_png,probability_png,contours,overlay_png`). Reported:
frames/s = frames / wall seconds of the whole request (decode, batched network, postprocessing, encoding),
the best of --repeats, and the model-only share. The target is >= 30 frames/s on 2 CPU cores; figures go
to docs/cine.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.artifact import MODEL_DIR  # noqa: E402
from tests.media import dicom_bytes, loop, multipage_tiff_bytes  # noqa: E402

PAGE_INCLUDE = "image_png,mask_png,probability_png,contours,overlay_png"


def measure(client, data: bytes, frames: int, include: str, repeats: int) -> dict:
    best, model_s = float("inf"), 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        response = client.post(
            "/predict", data={"image": (io.BytesIO(data), "loop"), "frames": "all", "include": include}
        )
        wall = time.perf_counter() - start
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["frame_count"] == frames
        if wall < best:
            best, model_s = wall, body["timing_ms"]["infer"] / 1000.0
    return {"frames_per_s": round(frames / best, 1), "seconds": round(best, 3), "infer_share": round(model_s / best, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from app import create_app

    # 120 uncompressed 580 x 420 frames are 29 MB: over the default 20 MiB body limit, which is a deployment
    # setting (NERVE_MAX_UPLOAD_BYTES), not part of what is measured here.
    app = create_app(
        {
            "MODEL_DIR": args.model_dir,
            "SECRET_KEY": "bench",
            "MAX_FRAMES": args.frames,
            "MAX_CONTENT_LENGTH": 256 * 1024 * 1024,
        }
    )
    client = app.test_client()
    segmenter = app.extensions["model_service"].segmenter
    results = {
        "cpu_cores": os.cpu_count(),
        "frames": args.frames,
        "runtime": segmenter.runtime,
        "threads": os.environ.get(
            "NERVE_INFERENCE_THREADS" if segmenter.runtime == "onnxruntime" else "TF_NUM_INTRAOP_THREADS",
            "default (all cores)",
        ),
        "runs": [],
    }
    for height, width in ((420, 580), (186, 256)):
        frames = loop(args.frames, height, width)
        for container, data in (("tiff", multipage_tiff_bytes(frames)), ("dicom", dicom_bytes(frames))):
            for label, include in (("default", "mask_png,rle"), ("page", PAGE_INCLUDE)):
                measure(client, data, args.frames, include, 1)  # warm the batch shapes
                row = {
                    "size": f"{width}x{height}",
                    "container": container,
                    "include": label,
                    **measure(client, data, args.frames, include, args.repeats),
                }
                results["runs"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
