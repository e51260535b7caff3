"""What decoding in a helper process costs (model/decode/isolated.py), against decoding in the request's thread.

    python benchmarks/bench_decode.py [--repeats 200]

Decodes the same generated files (never real frames) both ways, interleaved so that the machine's load hits
both alike: one 580 x 420 scanner frame as TIFF and as PNG, a 100-frame 580 x 420 loop (multi-page TIFF),
and one 4096 x 4096 PNG (the pixel limit). Reports the median of each in ms and the helper's extra time, also
as a share of the served model's time for one 580 x 420 frame measured in the same run (Segmenter.predict
on the shipped model). Prints JSON; figures go to docs/performance.md with their date.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.artifact import MODEL_DIR  # noqa: E402
from model.decode.frames import decode_all, decode_first  # noqa: E402
from model.decode.isolated import DecodePool  # noqa: E402
from tests.app.conftest import pil_bytes, tiff_bytes  # noqa: E402
from tests.conftest import phantom  # noqa: E402
from tests.hostile import blank_png  # noqa: E402
from tests.media import loop, multipage_tiff_bytes  # noqa: E402

MAX_PIXELS = 4096 * 4096


def median_ms(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    frame = phantom(420, 580)
    files = {
        "frame_tiff_580x420": (tiff_bytes(frame), None, args.repeats),
        "frame_png_580x420": (pil_bytes(frame, "PNG"), None, args.repeats),
        "loop_tiff_100x580x420": (multipage_tiff_bytes(loop(100, 420, 580)), 300, max(args.repeats // 20, 3)),
        "png_4096x4096": (blank_png(4096, 4096), None, max(args.repeats // 20, 3)),
    }
    pool = DecodePool()
    pool.warm_up()
    results = {}
    for name, (data, max_frames, repeats) in files.items():

        def direct(data=data, max_frames=max_frames):
            if max_frames is None:
                return decode_first(data, max_pixels=MAX_PIXELS)
            return decode_all(data, max_pixels=MAX_PIXELS, max_frames=max_frames)

        def isolated(data=data, max_frames=max_frames):
            return pool.decode(data, max_pixels=MAX_PIXELS, max_frames=max_frames, timeout=60)

        direct_ms, isolated_ms = [], []
        for _ in range(3):  # interleaved rounds
            direct_ms.append(median_ms(direct, repeats))
            isolated_ms.append(median_ms(isolated, repeats))
        results[name] = {"in_thread_ms": min(direct_ms), "helper_ms": min(isolated_ms)}
        results[name]["extra_ms"] = round(results[name]["helper_ms"] - results[name]["in_thread_ms"], 3)

    from model.segmenter import Segmenter

    segmenter = Segmenter.load(MODEL_DIR)
    gray = decode_first(files["frame_tiff_580x420"][0], max_pixels=MAX_PIXELS)
    segmenter.predict(gray)
    infer_ms = median_ms(lambda: segmenter.predict(gray), args.repeats)
    extra = results["frame_tiff_580x420"]["extra_ms"]
    print(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "runtime": segmenter.runtime,
                "infer_ms_580x420": infer_ms,
                "helper_extra_as_share_of_infer": round(extra / infer_ms, 3),
                "decode": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
