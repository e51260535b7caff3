"""Which signals tell a failed outline from a good one? The study behind model/quality.py's choice.

    python benchmarks/study_quality_signals.py [--run runs/oof] [--data ../shared/data/ultrasound-nerve]
                                               [--model model] [--out runs/quality-signals.json]

Every out-of-fold answer of a training run (training.quality.out_of_fold: each frame predicted by the fold
model that never saw its subject, post-processed as served) gets the shipped signals (model.quality.signals)
and a few candidates the shipped estimate does not use: the share of the map's mass outside the mask, the mean
binary entropy inside the mask and in a ring around it, the mask's solidity, its number of components, and
how far apart the two flip-TTA passes put the outline's centre. For the frames given an outline (an empty
answer has its own model) it reports

- each signal's failure-detection AUROC (failure: Dice < 0.5), oriented so that 0.5 is chance;
- the cross-fitted AUROC of the shipped logistic fit (training.quality.fit_monotone) on the shipped signals,
  and on the shipped signals plus each candidate in turn (fitted on four folds, scored on the fifth).

The choice is made on the same folds it is reported on, so a small gain is noise: with a few dozen failures
one AUROC's standard error is about 0.03. Prints JSON (also written to --out); docs/training.md records it.
Needs the fold models (docs/training.md, "The quality estimate"); without them it says so and exits 0, so that
`make bench` still runs elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.metrics import dice  # noqa: E402
from model.quality import OUTLINED_SIGNALS, signals  # noqa: E402
from tests.conftest import DATA_DIR  # noqa: E402
from training.quality import FAILURE_DICE, OutOfFold, fit_monotone, load_frames, out_of_fold  # noqa: E402

#: Width in full-size pixels of the ring around the mask whose entropy is measured.
RING_PX = 7
CANDIDATES = ("outside_mass", "entropy_inside", "entropy_ring", "solidity", "components", "flip_shift")


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def candidates(answer: OutOfFold) -> dict[str, float]:
    """The candidate signals of one outlined answer (full-size mask and map; model-resolution passes)."""
    mask, probability = answer.prediction.mask > 0, answer.prediction.probability
    threshold = answer.prediction.threshold
    size = 2 * RING_PX + 1
    ring = (cv2.dilate(mask.astype(np.uint8), np.ones((size, size), np.uint8)) > 0) & ~mask
    hull = cv2.convexHull(np.argwhere(mask)[:, ::-1].astype(np.int32))
    count, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    passes = [np.argwhere(m >= threshold) for m in (answer.plain, answer.mirror)]
    both = all(len(p) for p in passes)
    centres = [p.mean(axis=0) for p in passes] if both else []
    return {
        "outside_mass": float(probability[~mask].sum() / max(float(probability.sum()), 1e-9)),
        "entropy_inside": float(binary_entropy(probability[mask]).mean()),
        "entropy_ring": float(binary_entropy(probability[ring]).mean()) if ring.any() else 0.0,
        "solidity": float(mask.sum() / max(cv2.contourArea(hull), 1.0)),
        "components": float(count - 1),
        "flip_shift": float(np.hypot(*(centres[0] - centres[1]))) if both else float(max(answer.plain.shape)),
    }


def auroc(failure: np.ndarray, score: np.ndarray) -> float:
    """Failure-detection AUROC of a score, in whichever direction it separates (reported with that direction)."""
    from sklearn.metrics import roc_auc_score

    value = float(roc_auc_score(failure, -score))
    return max(value, 1.0 - value)


def cross_fitted_auroc(rows: list[dict], names: tuple[str, ...]) -> float:
    """The shipped fit on these signals, fitted on four folds' frames and scored on the fifth's."""
    from sklearn.metrics import roc_auc_score

    folds = np.array([r["fold"] for r in rows])
    expected = np.empty(len(rows))
    for k in np.unique(folds):
        model = fit_monotone([r for r, f in zip(rows, folds, strict=True) if f != k], names)
        expected[folds == k] = [model(r) for r, f in zip(rows, folds, strict=True) if f == k]
    return float(roc_auc_score(np.array([r["dice"] < FAILURE_DICE for r in rows]), -expected))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "oof", help="run folder with fold<k>/best.keras")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the Kaggle-layout folder (or a training.cache)")
    parser.add_argument("--model", type=Path, default=ROOT / "model", help="whose post-processing to use")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality-signals.json")
    args = parser.parse_args()
    if not (args.run / "folds.json").exists() or not args.data.exists():
        print(f"{args.run} holds no fold models, or {args.data} no data: nothing to study", file=sys.stderr)
        return 0

    rows = []
    for answer in out_of_fold(args.run, load_frames(args.data, args.model), args.model):
        if answer.prediction.nerve_present:
            rows.append(
                {
                    "fold": answer.fold,
                    "dice": dice(answer.prediction.mask, answer.truth),
                    **signals(answer.prediction, answer.plain, answer.mirror),
                    **candidates(answer),
                }
            )
    failure = np.array([r["dice"] < FAILURE_DICE for r in rows])
    names = (*OUTLINED_SIGNALS, "peak", *CANDIDATES)
    result = {
        "outlined_frames": len(rows),
        "failures": int(failure.sum()),
        "single_signal_auroc": {n: round(auroc(failure, np.array([r[n] for r in rows])), 3) for n in names},
        "shipped_fit_cross_fitted_auroc": round(cross_fitted_auroc(rows, OUTLINED_SIGNALS), 3),
        "shipped_fit_plus": {
            n: round(cross_fitted_auroc(rows, (*OUTLINED_SIGNALS, n)), 3) for n in ("peak", *CANDIDATES)
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
