"""What the quality estimate costs beside the network, for the served 580x420 frame.

    python benchmarks/bench_quality.py [--model-dir model] [--repeats 200]

Times, in the same run and interleaved, the network's two flip-TTA passes (`pass_maps`: what the server's
`infer` stage spends on the network), post-processing to the full-size mask, and the quality estimate's
`assess` on that answer (its signals and the two logistic models). The bound is the estimate's share of `infer`
as it was before it (network + post-processing), reported as a ratio with the absolute medians beside it.
Real frames from the shared data when present (NERVE_DATA_DIR), else a generated phantom. Prints JSON;
docs/performance.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.artifact import MODEL_DIR  # noqa: E402
from tests.conftest import DATA_DIR, phantom  # noqa: E402


def median_ms(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def frames(count: int) -> list[np.ndarray]:
    """Up to `count` real frames (grey, [0, 1]), or one phantom when the data is absent."""
    from PIL import Image

    paths = sorted(p for p in (DATA_DIR / "train").glob("*.tif") if "_mask" not in p.name)[:count]
    if not paths:
        return [phantom(420, 580)]
    return [np.asarray(Image.open(p), np.float32) / 255.0 for p in paths]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--frames", type=int, default=20, help="real frames cycled through")
    args = parser.parse_args()

    from model.postprocessing import postprocess
    from model.preprocessing import to_model_batch
    from model.segmenter import Segmenter, average

    segmenter = Segmenter.load(args.model_dir)
    if segmenter.quality is None:
        print(f"error: {args.model_dir / 'metadata.json'} has no quality estimator to time", file=sys.stderr)
        return 2
    post = segmenter.post
    grays = frames(args.frames)
    state = {"n": 0}

    def network():
        gray = grays[state["n"] % len(grays)]
        state["n"] += 1
        state["plain"], state["mirror"] = segmenter.pass_maps(to_model_batch([gray], segmenter.spec))
        state["gray"] = gray

    def full_size():
        merged = average(state["plain"], state["mirror"], post.tta_hflip)[0]
        state["prediction"] = postprocess(merged, *state["gray"].shape, post)

    def assess():
        segmenter.quality.assess(state["prediction"], state["plain"][0], state["mirror"][0])

    network(), full_size()
    rounds = {"network_ms": [], "postprocess_ms": [], "assess_ms": []}
    for _ in range(5):  # interleaved rounds; the fastest round of each stage is its figure
        rounds["network_ms"].append(median_ms(network, args.repeats))
        rounds["postprocess_ms"].append(median_ms(full_size, args.repeats))
        rounds["assess_ms"].append(median_ms(assess, args.repeats))
    result = {name: round(min(values), 3) for name, values in rounds.items()}
    # today's infer: the network and the full-size mask, before the estimate was added
    result["assess_share_of_infer"] = round(result["assess_ms"] / (result["network_ms"] + result["postprocess_ms"]), 4)
    result.update(
        date=date.today().isoformat(),
        runtime=segmenter.runtime,
        frames="real" if len(grays) > 1 else "phantom",
        repeats=args.repeats,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
