"""Evaluate a model artifact on a Kaggle-layout folder, exactly as the service would predict.

    python -m training.evaluate --data DIR --model model/ --out runs/eval

Writes per_image.csv (Dice, areas, presence, the predicted mask's RLE), summary.json (Kaggle per-image
Dice, nerve-present Dice, presence recall, empties kept empty, per subject), subject_dice.png and
overlays.png (best and worst frames). The pictures show real frames: keep them out of the repository.
Frames are predicted through model.segmenter.Segmenter, so each reported mask is the served one.
Figures are held-out only for subjects the model did not train on (see the model card's folds).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from model.artifact import ModelArtifactError
from model.decode.images import read_image
from model.errors import ImageError
from model.metrics import dice
from model.quality import csv_fields
from model.rle import rle_encode
from training.data import DatasetError, Pair, find_pairs
from training.scoring import FrameScore, summarise

BATCH = 32
GRID_EACH = 6


def subject_list(text: str) -> set[int]:
    try:
        return {int(s) for s in text.split(",") if s.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma list of subject numbers") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="Kaggle-layout folder (with train/ or the train folder)")
    p.add_argument("--model", type=Path, required=True, help="model folder holding unet.keras + metadata.json")
    p.add_argument("--out", type=Path, required=True, help="folder for the CSV, JSON and PNGs")
    p.add_argument(
        "--subjects", type=subject_list, default=None, help="comma list of subject ids to evaluate (default all)"
    )
    return p.parse_args(argv)


def load_segmenter(path: Path):
    from model.segmenter import Segmenter

    return Segmenter.load(path.parent if path.suffix == ".keras" else path)


def evaluate(segmenter, pairs: list[Pair]) -> list[dict]:
    """Predict and score every pair, in batches; one row per frame."""
    rows = []
    for start in range(0, len(pairs), BATCH):
        chunk = pairs[start : start + BATCH]
        images = [read_image(p.image) for p in chunk]
        truths = [(read_image(p.mask) > 0.5).astype(np.uint8) for p in chunk]
        for pair, image, truth, pred in zip(chunk, images, truths, segmenter.predict_many(images), strict=True):
            if truth.shape != image.shape:
                raise DatasetError(f"{pair.mask}: mask size differs from its image")
            rows.append(
                {
                    "image": pair.image.name,
                    "subject": pair.subject,
                    "width": pred.width,
                    "height": pred.height,
                    "dice": round(dice(pred.mask, truth), 6),
                    "truth_area_px": int(truth.sum()),
                    "predicted_area_px": pred.area,
                    "truth_present": bool(truth.any()),
                    "predicted_present": pred.nerve_present,
                    "nerve_probability": round(pred.nerve_probability, 6),
                    **csv_fields(pred.assessment),
                    "rle": rle_encode(pred.mask),
                }
            )
        print(f"\r{min(start + BATCH, len(pairs))}/{len(pairs)} frames", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def summary_of(rows: list[dict]) -> dict:
    def scores(selected):
        return [FrameScore(r["dice"], r["truth_present"], r["predicted_present"]) for r in selected]

    by_subject = defaultdict(list)
    for r in rows:
        by_subject[r["subject"]].append(r)
    return {
        **summarise(scores(rows)),
        "per_subject": {str(s): summarise(scores(rs)) for s, rs in sorted(by_subject.items())},
    }


def quality_summary(rows: list[dict], cut: float, out: Path) -> dict:
    """The quality estimate's figures and plots on these frames, as training's out-of-fold report has them.
    One model folder's weights saw every subject they were trained on, so unless --subjects names subjects
    it never saw, these figures are in-sample: the summary says so."""
    from training.quality import plot, report

    expected = np.array([r["expected_dice"] for r in rows])
    plot(rows, expected, cut, out, "quality estimate on these frames (in-sample unless held out)")
    return {
        "evaluation": "the shipped estimator on these frames: in-sample for subjects the weights trained on (the "
        "card's figures are out-of-fold and cross-fitted)",
        **report(rows, expected, cut),
    }


def draw(rows: list[dict], pairs: list[Pair], summary: dict, out: Path) -> None:
    from model.rle import rle_decode
    from training.plots import plot_overlay_grid, plot_subject_dice

    plot_subject_dice({int(s): v["kaggle_dice"] for s, v in summary["per_subject"].items()}, out / "subject_dice.png")
    order = np.argsort([r["dice"] for r in rows], kind="stable")
    chosen = list(order[-GRID_EACH:][::-1]) + list(order[:GRID_EACH])
    panels = []
    for i in chosen:
        r, pair = rows[i], pairs[i]
        image = read_image(pair.image)
        truth = read_image(pair.mask) > 0.5
        pred = rle_decode(r["rle"], r["height"], r["width"])
        panels.append((f"{pair.name}  Dice {r['dice']:.2f}", image, truth, pred))
    plot_overlay_grid(panels, out / "overlays.png", columns=GRID_EACH)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        pairs = find_pairs(args.data)
        if args.subjects:
            pairs = [p for p in pairs if p.subject in args.subjects]
            if not pairs:
                raise DatasetError(f"{args.data}: no frames of subjects {sorted(args.subjects)}")
        segmenter = load_segmenter(args.model)
        rows = evaluate(segmenter, pairs)
    except (DatasetError, ImageError, ModelArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "per_image.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # Which weights and which runtime made these masks (the same files serve through the same runtime).
    summary = {"model": segmenter.info, "runtime": segmenter.runtime, **summary_of(rows)}
    if segmenter.quality is not None:
        summary["quality"] = quality_summary(rows, segmenter.quality.cut, args.out)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    draw(rows, pairs, summary, args.out)
    headline = {
        k: summary[k]
        for k in ("frames", "kaggle_dice", "nerve_present_dice", "presence_recall", "empty_kept_empty", "empty_frames")
    }
    print(json.dumps(headline, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
