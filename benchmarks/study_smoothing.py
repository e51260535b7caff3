"""Does temporal smoothing help on real scans? And do frame numbers follow time order at all?

    python benchmarks/study_smoothing.py [--data DIR] [--model DIR] [--out runs/smoothing.json]

1. Time order. Frames of one subject come from one scan, but nothing documents that `<subject>_<n>`
   numbers follow time. If they do, frames n and n+1 are more alike than two frames of the same subject
   picked at random, and a frame's most similar neighbour is far more often n +- 1 than chance. Similarity
   is the Pearson correlation of the model-resolution images.
2. Dice. Within each subject, runs of consecutive frame numbers are treated as cine loops; the shipped
   model's probability maps are smoothed over each run with model.cine.smooth_maps (window 1 = off) and
   thresholded by the service's own postprocessing, then scored with model.metrics.dice against the
   full-size masks. Subjects held out from the shipped weights' training (metadata folds) are reported
   apart, since only they are honest.
3. A proxy for real cine: frames adjacent in time are near-identical, so each frame's map is averaged
   with those of its `window - 1` most similar frames of the same subject (whatever their numbers). If
   that does not help either, averaging neighbours' maps is unlikely to help on real loops with this model.

Prints a JSON summary (also written to --out); the figures are recorded in docs/cine.md. Needs the real
data; exits 0 with a message when it is absent, so `make bench` still runs elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.cine import smooth_maps  # noqa: E402
from model.metrics import dice  # noqa: E402
from model.postprocessing import postprocess  # noqa: E402
from model.preprocessing import normalise  # noqa: E402
from training.data import Dataset, load_dataset  # noqa: E402

WINDOWS = (1, 3, 5, 7, 9)
MIN_RUN = 3  # a "loop" needs at least three consecutive frames for a centred window to mean anything
SEED = 0


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def time_order_check(ds: Dataset) -> dict:
    """Consecutive-number pairs against random same-subject pairs, and nearest-neighbour adjacency."""
    rng = np.random.default_rng(SEED)
    by_subject: dict[int, list[int]] = defaultdict(list)
    for i, pair in enumerate(ds.pairs):
        by_subject[pair.subject].append(i)
    consecutive, random_pairs, nn_adjacent, nn_total, chance = [], [], 0, 0, []
    for indices in by_subject.values():
        frame_of = {ds.pairs[i].frame: i for i in indices}
        for frame, i in frame_of.items():
            if frame + 1 in frame_of:
                consecutive.append(correlation(ds.images[i], ds.images[frame_of[frame + 1]]))
        for _ in range(len(indices)):
            i, j = rng.choice(indices, 2, replace=False)
            random_pairs.append(correlation(ds.images[i], ds.images[j]))
        flat = ds.images[indices].reshape(len(indices), -1)
        flat = flat - flat.mean(axis=1, keepdims=True)
        flat /= np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12
        similarity = flat @ flat.T
        np.fill_diagonal(similarity, -np.inf)
        frames = np.array([ds.pairs[i].frame for i in indices])
        for row, frame in enumerate(frames):
            has_neighbour = (frame - 1 in frame_of) or (frame + 1 in frame_of)
            if not has_neighbour:
                continue
            nn_total += 1
            nn_adjacent += abs(int(frames[int(np.argmax(similarity[row]))]) - int(frame)) == 1
            chance.append(((frame - 1 in frame_of) + (frame + 1 in frame_of)) / (len(indices) - 1))
    return {
        "consecutive_pairs": len(consecutive),
        "consecutive_corr_median": round(float(np.median(consecutive)), 4),
        "random_pairs": len(random_pairs),
        "random_corr_median": round(float(np.median(random_pairs)), 4),
        "frames_with_a_numbered_neighbour": nn_total,
        "nearest_neighbour_is_n_plus_minus_1": round(nn_adjacent / max(nn_total, 1), 4),
        "chance_of_that": round(float(np.mean(chance)) if chance else 0.0, 4),
    }


def runs_of(ds: Dataset) -> list[list[int]]:
    """Maximal runs of consecutive frame numbers within a subject, as dataset indices in frame order."""
    order = sorted(range(len(ds)), key=lambda i: (ds.pairs[i].subject, ds.pairs[i].frame))
    runs: list[list[int]] = []
    for i in order:
        prev = runs[-1][-1] if runs else None
        if (
            prev is not None
            and ds.pairs[prev].subject == ds.pairs[i].subject
            and ds.pairs[prev].frame + 1 == ds.pairs[i].frame
        ):
            runs[-1].append(i)
        else:
            runs.append([i])
    return [r for r in runs if len(r) >= MIN_RUN]


def smoothing_dice(segmenter, ds: Dataset, runs: list[list[int]], held_out: set[int]) -> dict:
    """Mean per-frame Dice (Kaggle's, 1 for two empty masks) for each window, all and held-out subjects."""
    maps = segmenter.probability_maps(normalise(ds.images, segmenter.spec))
    scores: dict[int, dict[str, list[float]]] = {w: {"all": [], "held_out": []} for w in WINDOWS}
    for window in WINDOWS:
        for run in runs:
            smoothed = smooth_maps(maps[run], window)
            for m, i in zip(smoothed, run, strict=True):
                truth = ds.full_masks[i]
                pred = postprocess(m, truth.shape[0], truth.shape[1], segmenter.post)
                score = dice(pred.mask, truth)
                scores[window]["all"].append(score)
                if ds.pairs[i].subject in held_out:
                    scores[window]["held_out"].append(score)
    return {
        str(w): {
            group: {"frames": len(values), "dice": round(float(np.mean(values)), 4)} for group, values in groups.items()
        }
        for w, groups in scores.items()
    }


def similar_frame_dice(segmenter, ds: Dataset, held_out: set[int]) -> dict:
    """Dice when each frame's map is averaged with its most similar same-subject frames' maps (item 3)."""
    maps = segmenter.probability_maps(normalise(ds.images, segmenter.spec))
    flat = ds.images.reshape(len(ds), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    flat = flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12)
    result = {}
    for window in WINDOWS:
        scores: dict[str, list[float]] = {"all": [], "held_out": []}
        for i, pair in enumerate(ds.pairs):
            same = np.flatnonzero(ds.subjects == pair.subject)
            similarity = flat[same] @ flat[i]
            nearest = same[np.argsort(-similarity)[:window]]  # the frame itself comes first
            truth = ds.full_masks[i]
            pred = postprocess(maps[nearest].mean(axis=0), truth.shape[0], truth.shape[1], segmenter.post)
            score = dice(pred.mask, truth)
            scores["all"].append(score)
            if pair.subject in held_out:
                scores["held_out"].append(score)
        result[str(window)] = {g: {"frames": len(v), "dice": round(float(np.mean(v)), 4)} for g, v in scores.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ultrasound-nerve")
    parser.add_argument("--model", type=Path, default=ROOT / "model")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "smoothing.json")
    args = parser.parse_args(argv)
    if not (args.data / "train").is_dir():
        print(f"skipped: no data at {args.data}", file=sys.stderr)
        return 0
    from model.segmenter import Segmenter

    segmenter = Segmenter.load(args.model)
    ds = load_dataset(args.data, segmenter.spec.height, segmenter.spec.width)
    shipped = segmenter.metadata.get("shipped_fold")
    held_out = {s for f in segmenter.metadata.get("folds", []) if f["fold"] == shipped for s in f["subjects"]}
    runs = runs_of(ds)
    result = {
        "frames": len(ds),
        "time_order": time_order_check(ds),
        "runs": {
            "count": len(runs),
            "frames": sum(map(len, runs)),
            "min_length": MIN_RUN,
            "median_length": float(np.median([len(r) for r in runs])) if runs else 0,
        },
        "held_out_subjects": sorted(held_out),
        "dice_by_window": smoothing_dice(segmenter, ds, runs, held_out),
        "dice_by_window_similar_frames": similar_frame_dice(segmenter, ds, held_out),
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
