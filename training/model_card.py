"""Render model/MODEL_CARD.md from model/metadata.json, so the card's figures are the measured ones.

    python -m training.model_card [--model-dir model] [--notes training/card_notes.md]

The numbers (folds, per-fold and mean subject-held-out figures, calibration, data, versions) come from
the metadata training wrote; the prose on failure modes comes from a notes file written by a person who
looked at the evaluation pictures (they show real frames, so they are never committed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.artifact import MODEL_DIR, ModelArtifactError, load_metadata
from training.recipe import RecipeError, artifact_augmentation

NOTES = Path(__file__).with_name("card_notes.md")


HEADER = (
    "| fold | held-out subjects | frames | nerve-present Dice | Kaggle Dice | presence recall "
    "| empties kept empty | threshold / min area |\n|---|---|---|---|---|---|---|---|"
)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render(meta: dict, notes: str) -> str:
    figures = meta["figures"]
    mean = figures["mean"]
    arch = meta["architecture"]
    training = meta["training"]
    post = meta["postprocessing"]
    rows = "\n".join(
        f"| {f['fold']} | {', '.join(map(str, f['subjects']))} | {f['frames']} | {_num(f['nerve_present_dice'])} "
        f"| {_num(f['kaggle_dice'])} | {_pct(f['presence_recall'])} | "
        f"{f['empty_kept_empty']}/{f['empty_frames']} | {f['threshold']:.2f} / {f['min_area_px']} |"
        for f in figures["per_fold"]
    )
    mean_row = (
        f"| **mean** | | | **{_num(mean['nerve_present_dice'])}** | **{_num(mean['kaggle_dice'])}** | "
        f"**{_pct(mean['presence_recall'])}** | **{mean['empty_kept_empty']}** | |"
    )
    return f"""# Model card: {meta["name"]} {meta["version"]}

**Research use only. Not a medical device.** Not validated for clinical decisions; do not use it to guide
a needle or a catheter.

## What it does
Segments the brachial plexus in a single B-mode neck ultrasound frame: a per-pixel nerve probability,
a binary mask at the input image's own size, and a presence decision (the mask is non-empty).

## Shipped weights
- `model/{meta["weights"]["file"]}` ({meta["weights"]["bytes"] / 1e6:.1f} MB, {meta["weights"]["parameters"]:,}
  parameters, sha256 `{meta["weights"]["sha256"]}`).
- **What they were trained on:** {meta["shipped_weights"]}.
- Architecture: U-Net, depth {arch["depth"]}, {arch["base_filters"]} base filters, BatchNorm, dropout
  {arch["dropout"]}, sigmoid output; input {arch["height"]} x {arch["width"]} grayscale.
- Training: {training["loss"]}, {training["optimizer"]} peak lr {training["learning_rate"]}, {_schedule(training)},
  batch {training["batch_size"]}, {_augmentation(meta)}, seed {meta["seed"]}.
  Test-time augmentation: horizontal flip.{_recipe(training)}
- Preprocessing: any image -> grayscale in [0, 1] by bit depth -> area resize to the input size ->
  (x - {meta["input"]["normalisation"]["mean"]:.4f}) / {meta["input"]["normalisation"]["std"]:.4f}.
- Postprocessing: probability resized back to the image size, pixel is nerve when p >= {post["threshold"]:.2f},
  connected components under {post["min_area_px"]} model-input pixels (scaled to the image area) removed.
  `nerve_probability` is the peak of the probability map. Calibration rule: {post["calibration"]["rule"]}
  (calibrated on {post["calibration"]["calibration_frames"]} out-of-fold frames).

## Data
{meta["data"]["source"]}: {meta["data"]["frames"]} frames of {len(meta["data"]["subjects"])} subjects,
{meta["data"]["nerve_present_frames"]} with a nerve.

## How quality was measured
Subject-wise {training["folds"]}-fold cross-validation: no subject is in two folds. {_fold_training(training)}
Each fold's figures use a threshold and min-area calibrated on the **other** folds'
out-of-fold predictions only. Dice is Kaggle's per-image Dice (1 when both masks are empty).

{HEADER}
{rows}
{mean_row}

These figures estimate how the training recipe does on subjects it never saw. {_shipped_estimate(meta)}

{_quality(meta)}
{notes.strip()}

## Versions
Artifact written by Keras {meta["versions"]["keras"]} on {meta["versions"]["backend"]}; weights trained under
{_backends(meta)}. Python {meta["versions"]["python"]}, NumPy
{meta["versions"]["numpy"]}. Changelog: {meta["changelog"][meta["version"]]}
"""


def _quality(meta: dict) -> str:
    """The quality estimate's section: what the two fields mean and how well they did out of fold."""
    intro = (
        "## When not to trust an outline\n"
        "With a quality estimator in its metadata, every answer carries `expected_dice`, the model's own "
        "estimate of the Dice between its mask and an expert's outline (for an empty mask: the estimated "
        "probability that no nerve is in view), and `reliable`, true when that estimate reaches the cut."
    )
    quality = meta.get("quality")
    if quality is None:
        return (
            f"{intro} **This artifact has none yet** (the out-of-fold training run it is fitted on has not "
            "finished): its answers come without the two fields, and no answer is marked reliable or not.\n"
        )
    f = quality["figures"]
    subject_1 = f.get("subject_1_empty")
    empties = (
        f"Subject 1's {subject_1['empty_frames']} empty frames, in the fold that holds subject 1 out (its estimator "
        f"fitted on no empty frame): {subject_1['empty_frames_empty_or_unreliable']} end up empty or unreliable."
        if subject_1
        else "No empty frame was among these out-of-fold frames."
    )
    return f"""{intro} The outlined answer's model uses {_signal_words(quality["outlined"]["signals"])}; the empty
answer's, {_signal_words(quality["empty"]["signals"])} (model/quality.py). Both are logistic models fitted on
out-of-fold predictions (training/quality.py). Figures {f["evaluation"]}, over {f["frames"]} frames (failure:
Dice < 0.5, empty frames given a mask included):

| failure-detection AUROC | ECE (10 bins) | cut | nerve-present frames reliable | their mean Dice | all nerve-present |
| --- | --- | --- | --- | --- | --- |
{_quality_row(f)}

{empties} Cut rule: {f["rule"]}. The estimate was fitted at the calibrated threshold; with a user's own
threshold or loop smoothing it is computed the same way on the mask and map returned.
"""


#: The card's words for each signal model/quality.py computes.
SIGNAL_WORDS = {
    "soft_dice": "the soft Dice of the mask against its own probability map",
    "flip_dice": "the agreement of the two flip-TTA passes",
    "log_area_fraction": "the mask's area",
    "mean_inside": "the mean probability inside the mask",
    "peak": "the map's peak probability",
}


def _signal_words(names: list[str]) -> str:
    words = [SIGNAL_WORDS[n] for n in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _quality_row(f: dict) -> str:
    cells = [_num(f["failure_auroc"]), _num(f["ece_10_bins"]), f"{f['cut']:.3f}"]
    cells += [_pct(f["nerve_present_reliable_share"]), _num(f["nerve_present_reliable_dice"])]
    return "| " + " | ".join([*cells, _num(f["nerve_present_dice"])]) + " |"


def _augmentation(meta: dict) -> str:
    """The training augmentation and its ranges, as the recipe gave them to training/augment.py."""
    if not meta["training"].get("augment", True):
        return "no augmentation"
    ranges = artifact_augmentation(meta)
    if ranges is None:
        return "augmentation (its ranges were not recorded)"
    return (
        f"augmentation (horizontal flip with probability {ranges.hflip_probability:g}, rotation <= "
        f"{ranges.max_rotation_deg:g} deg, shift <= {ranges.max_shift:.0%}, zoom <= {ranges.max_zoom:.0%}, "
        f"brightness +-{ranges.brightness:g}, contrast x{ranges.contrast[0]:g}-{ranges.contrast[1]:g}, "
        f"gamma {ranges.gamma[0]:g}-{ranges.gamma[1]:g})"
    )


def _recipe(training: dict) -> str:
    """Which recipe file trained the weights, with the run's overrides (absent before recipes were files)."""
    recipe = training.get("recipe")
    if not recipe:
        return ""
    overrides = ", ".join(f"`{key} = {value}`" for key, value in recipe["overrides"].items())
    return f"\n- Recipe: `{recipe['file']}`" + (f", overridden: {overrides}." if overrides else ", as it stands.")


def _kept(training: dict) -> str:
    """Which weights a fit kept: the SWA average, the best inner-validation epoch, or the last epoch."""
    if training.get("swa_epochs"):
        return "the SWA average kept"
    if training["val_fraction"]:
        return (
            f"{training['epochs']} epochs max, early stopping on inner-validation Dice (patience "
            f"{training['patience']}), best epoch kept"
        )
    return "last epoch kept"


def _backends(meta: dict) -> str:
    """The Keras backend(s) the weights trained under: a fine-tuning run's own and, first, its start's."""
    own = meta["training"].get("backend", meta["versions"]["backend"])
    start = (meta["training"].get("fine_tuned_from") or {}).get("backend")
    return f"{start}, then {own}" if start and start != own else own


def _schedule(training: dict) -> str:
    """The whole schedule of the weights, including the run a fine-tuning started from."""
    own = f"{training['schedule']}, {_kept(training)}"
    start = training.get("fine_tuned_from") or {}
    if "schedule" not in start:
        return own
    source = f"model {start['version']}: " if start.get("version") else ""
    final = f", {start['final_epochs']} for the final model" if start.get("final_epochs") else ""
    return (
        f"first ({source}{start['epochs']} epochs per fold model{final}) {start['schedule']}, "
        f"{_kept(start)}; then, continued from those weights, {own}"
    )


def _fold_training(training: dict) -> str:
    """How a fold's model was trained, so the reader knows what the figures estimate."""
    if training["val_fraction"]:
        share = round(training["val_fraction"] * 100)
        return (
            f"Each fold's model trained on the other folds' subjects minus {share}% inner-validation subjects "
            "(early stopping and checkpoint choice)."
        )
    return (
        f"Each fold's model trained on all the other folds' subjects for the full schedule, {_kept(training)}: the "
        "procedure that made the shipped weights."
    )


def _shipped_estimate(meta: dict) -> str:
    fold = meta.get("shipped_fold")
    if fold is None:
        return "The shipped weights saw every subject, so no figure is held out for them; the mean is the estimate."
    own = next(f for f in meta["figures"]["per_fold"] if f["fold"] == fold)
    return (
        f"The shipped weights are fold {fold}'s model: its own held-out figures are the fold {fold} row "
        f"(nerve-present Dice {_num(own['nerve_present_dice'])}); every other row's subjects were in its "
        "training data."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.model_card", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--notes", type=Path, default=NOTES)
    args = parser.parse_args(argv)
    try:
        meta = load_metadata(args.model_dir)
        notes = args.notes.read_text() if args.notes.exists() else ""
    except (ModelArtifactError, RecipeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (args.model_dir / "MODEL_CARD.md").write_text(render(meta, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
