"""Fit and report the quality estimate (model/quality.py) on out-of-fold predictions.

    python -m training.quality --run runs/oof --data ../shared/data/ultrasound-nerve --out runs/oof/quality
    python -m training.quality --table training/tables/quality-oof-1.4.0.csv --out runs/quality --install

With --run, every frame is predicted by the fold model that never saw its subject (fold<k>/best.keras of a
training run, through the same Segmenter as serving, at the shipped model's post-processing) and its signals
and Dice go into a table of per-frame scalars, table.csv: no image content, so it may be committed and the fit
redone from it (--table) without the fold models. The estimator is then

- reported cross-fitted: fitted on four folds' frames, applied to the fifth's, each frame's expected Dice coming
  from an estimator that never saw its subject (report.json, reliability.png, risk_coverage.png);
- fitted on every frame for shipping; --install writes it, with the cut and the figures, into model/metadata.json
  and regenerates the card (the weights and their sha256 do not change).

Cross-validation estimates the procedure, so the estimator fitted on all out-of-fold frames applies to the
shipped weights, as the threshold calibration does.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.postprocessing import Prediction
from model.quality import EMPTY_SIGNALS, OUTLINED_SIGNALS, Logistic, QualityEstimator
from training.data import Dataset

#: failure, for the detection AUROC: an outline (or an empty answer) scoring Dice below this.
FAILURE_DICE = 0.5
#: The cut rule: the highest cut that still marks this share of nerve-present frames reliable.
COVERAGE_FLOOR = 0.85
#: Equal-width bins of expected Dice for the expected calibration error.
ECE_BINS = 10
#: L2 strength of the logistic fits (scikit-learn's C): mild, the signals are few and standardised.
REGULARISATION_C = 1.0
#: Signals an outlined answer's expected Dice may only rise with (a mask that agrees better with its map, or
#: that both TTA passes draw alike, never gets a lower estimate, all else equal).
RISING = ("soft_dice", "flip_dice", "mean_inside")
SIGNAL_COLUMNS = tuple(dict.fromkeys(OUTLINED_SIGNALS + EMPTY_SIGNALS))
COLUMNS = ("image", "subject", "fold", "truth_present", "predicted_present", "dice", *SIGNAL_COLUMNS)


def fit_logistic(rows: list[dict], names: tuple[str, ...]) -> Logistic:
    """A logistic model of Dice (a number in [0, 1]) on standardised signals.

    Each frame enters twice, as a success weighted by its Dice and as a failure weighted by 1 - Dice: the
    cross-entropy with the Dice as a soft label, which scikit-learn's weighted LogisticRegression minimises.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.array([[float(r[n]) for n in names] for r in rows], np.float64)
    d = np.clip(np.array([float(r["dice"]) for r in rows]), 0.0, 1.0)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant signal carries no information; keep it harmless
    z = (x - mean) / scale
    fitted = LogisticRegression(C=REGULARISATION_C, max_iter=1000)
    fitted.fit(np.vstack([z, z]), np.r_[np.ones(len(z)), np.zeros(len(z))], sample_weight=np.r_[d, 1.0 - d])
    return Logistic(
        tuple(names),
        tuple(mean.tolist()),
        tuple(scale.tolist()),
        tuple(fitted.coef_[0].tolist()),
        float(fitted.intercept_[0]),
    )


def fit_monotone(rows: list[dict], names: tuple[str, ...]) -> Logistic:
    """fit_logistic, refitted without any RISING signal whose coefficient came out negative (collinear signals
    can trade places), so the estimate is monotone in those signals by construction."""
    while True:
        model = fit_logistic(rows, names)
        wrong = [n for n, c in zip(model.signals, model.coef, strict=True) if n in RISING and c < 0]
        if not wrong:
            return model
        names = tuple(n for n in names if n not in wrong)


def fit(rows: list[dict], cut: float = 0.5) -> QualityEstimator:
    """Both models on these frames. Without an empty answer among them (possible on data with few empty
    frames), the empty model is fitted on no frame at all and predicts the prior of the outlined frames."""
    outlined = [r for r in rows if r["predicted_present"]]
    empty = [r for r in rows if not r["predicted_present"]]
    if len(outlined) < 2:
        raise ValueError("the quality estimate needs at least two outlined frames to fit")
    empty_model = fit_logistic(empty, EMPTY_SIGNALS) if len(empty) >= 2 else constant(EMPTY_SIGNALS, 0.0)
    return QualityEstimator(fit_monotone(outlined, OUTLINED_SIGNALS), empty_model, cut)


def constant(names: tuple[str, ...], probability: float) -> Logistic:
    """A model that answers `probability` whatever the signals (clipped away from 0 and 1)."""
    p = min(max(probability, 1e-3), 1 - 1e-3)
    zeros = tuple(0.0 for _ in names)
    return Logistic(tuple(names), zeros, tuple(1.0 for _ in names), zeros, float(np.log(p / (1 - p))))


def predict(estimator: QualityEstimator, rows: Iterable[dict]) -> np.ndarray:
    return np.array([estimator.expected_dice(r, bool(r["predicted_present"])) for r in rows])


def cross_fitted(rows: list[dict]) -> np.ndarray:
    """Each frame's expected Dice from an estimator fitted on the other folds' frames only."""
    out = np.empty(len(rows))
    folds = np.array([int(r["fold"]) for r in rows])
    for k in np.unique(folds):
        train = [r for r, f in zip(rows, folds, strict=True) if f != k]
        out[folds == k] = predict(fit(train), [r for r, f in zip(rows, folds, strict=True) if f == k])
    return out


def choose_cut(expected: np.ndarray, truth_present: np.ndarray) -> float:
    """The highest cut that keeps >= COVERAGE_FLOOR of the nerve-present frames reliable."""
    present = np.sort(expected[truth_present])[::-1]
    keep = int(np.ceil(COVERAGE_FLOOR * len(present)))
    return float(present[keep - 1]) if keep else 0.0


def expected_calibration_error(expected: np.ndarray, dice: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width bins of expected Dice of (share of frames) x |mean expected - mean actual Dice|."""
    which = np.minimum((expected * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(expected[inside].mean() - dice[inside].mean())
    return float(error)


def risk_coverage(expected: np.ndarray, dice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean Dice of the frames kept against the share kept, keeping the highest expected Dice first."""
    order = np.argsort(-expected, kind="stable")
    kept = np.arange(1, len(order) + 1)
    return kept / len(order), np.cumsum(dice[order]) / kept


def report(rows: list[dict], expected: np.ndarray, cut: float) -> dict:
    """The card's figures for expected Dice values of these frames (cross-fitted, or in-sample: say which)."""
    from sklearn.metrics import roc_auc_score

    dice = np.array([float(r["dice"]) for r in rows])
    present = np.array([bool(r["truth_present"]) for r in rows])
    outlined = np.array([bool(r["predicted_present"]) for r in rows])
    reliable = expected >= cut
    failure = dice < FAILURE_DICE
    empties = ~present
    figures = {
        "frames": len(rows),
        "failures": int(failure.sum()),
        "failure_auroc": float(roc_auc_score(failure, -expected)) if 0 < failure.sum() < len(rows) else None,
        "ece_10_bins": expected_calibration_error(expected, dice),
        "cut": cut,
        "nerve_present_frames": int(present.sum()),
        "nerve_present_reliable_share": float(reliable[present].mean()) if present.any() else None,
        "nerve_present_reliable_dice": float(dice[present & reliable].mean()) if (present & reliable).any() else None,
        "nerve_present_dice": float(dice[present].mean()) if present.any() else None,
        "empty_frames": int(empties.sum()),
        "empty_frames_empty_or_unreliable": int((empties & (~outlined | ~reliable)).sum()),
        "failures_flagged": int((failure & ~reliable).sum()),
    }
    return figures


@dataclass(frozen=True)
class OutOfFold:
    """One frame's answer from the fold model that never saw its subject, with what it was cut from."""

    fold: int
    image: str
    subject: int
    truth: np.ndarray  # the expert's full-size mask
    prediction: Prediction  # post-processed as the shipped model serves it
    plain: np.ndarray  # the two flip-TTA passes' model-resolution maps
    mirror: np.ndarray


def load_frames(data_dir: Path, model_dir: Path) -> Dataset:
    """The labelled frames (a Kaggle-layout folder or a training.cache file) at model_dir's input size."""
    from model.artifact import load_metadata
    from model.preprocessing import InputSpec
    from training.cache import load_any

    spec = InputSpec.from_metadata(load_metadata(model_dir))
    return load_any(data_dir, spec.height, spec.width)


def out_of_fold(run: Path, data: Dataset, model_dir: Path) -> Iterator[OutOfFold]:
    """Every frame of the run's trained folds (`data` at model_dir's input size: load_frames, or a training
    run's own frames), predicted by the fold model that never saw its subject, through the same Segmenter as
    serving, post-processed as the shipped model (model_dir's metadata) serves it."""
    import keras

    from model.artifact import load_metadata
    from model.postprocessing import PostprocessConfig, postprocess
    from model.preprocessing import InputSpec, normalise
    from model.segmenter import Segmenter, average
    from training.split import fold_indices

    metadata = load_metadata(model_dir)
    spec, post = InputSpec.from_metadata(metadata), PostprocessConfig.from_metadata(metadata)
    folds = json.loads((run / "folds.json").read_text())
    for k, subjects in enumerate(folds):
        if not (run / f"fold{k}" / "fold.json").exists():
            print(f"fold {k}: not trained yet in {run}, skipped", file=sys.stderr)
            continue
        model = keras.models.load_model(run / f"fold{k}" / "best.keras", compile=False)
        segmenter = Segmenter.from_keras(model, spec, post)
        index = fold_indices(data.subjects, subjects)
        plain, mirror = segmenter.pass_maps(normalise(data.images[index], spec))
        maps = average(plain, mirror, post.tta_hflip)
        for n, i in enumerate(index):
            truth = data.full_masks[i]
            prediction = postprocess(maps[n], truth.shape[0], truth.shape[1], post)
            yield OutOfFold(k, data.pairs[i].image.name, int(data.subjects[i]), truth, prediction, plain[n], mirror[n])


def collect(run: Path, data: Dataset, model_dir: Path) -> list[dict]:
    """One row of signals and Dice per out-of-fold frame (out_of_fold): the table the estimator is fitted on."""
    from model.metrics import dice
    from model.quality import signals

    rows = []
    for answer in out_of_fold(run, data, model_dir):
        values = signals(answer.prediction, answer.plain, answer.mirror)
        rows.append(
            {
                "image": answer.image,
                "subject": answer.subject,
                "fold": answer.fold,
                "truth_present": bool(answer.truth.any()),
                "predicted_present": answer.prediction.nerve_present,
                "dice": round(dice(answer.prediction.mask, answer.truth), 6),
                **{name: round(values[name], 6) for name in SIGNAL_COLUMNS},
            }
        )
    return rows


def write_table(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


def read_table(path: Path) -> list[dict]:
    """The per-frame table written by write_table, typed again; a bad table is an error naming the file."""
    try:
        with open(path, newline="") as handle:
            raw = list(csv.DictReader(handle))
        missing = [c for c in COLUMNS if raw and c not in raw[0]]
        if not raw or missing:
            raise ValueError(f"missing columns {missing}" if missing else "no rows")
        return [
            {
                "image": r["image"],
                "subject": int(r["subject"]),
                "fold": int(r["fold"]),
                "truth_present": r["truth_present"] == "True",
                "predicted_present": r["predicted_present"] == "True",
                "dice": float(r["dice"]),
                **{name: float(r[name]) for name in SIGNAL_COLUMNS},
            }
            for r in raw
        ]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a quality table: {exc}") from None


def plot(rows: list[dict], expected: np.ndarray, cut: float, out: Path, title: str) -> None:
    """reliability.png (mean actual against mean expected Dice per bin) and risk_coverage.png."""
    from training.plots import plot_reliability, plot_risk_coverage

    dice = np.array([float(r["dice"]) for r in rows])
    plot_reliability(expected, dice, ECE_BINS, out / "reliability.png", title)
    coverage, mean_dice = risk_coverage(expected, dice)
    kept_share = float((expected >= cut).mean())
    plot_risk_coverage(coverage, mean_dice, kept_share, out / "risk_coverage.png", title)


def install(estimator: QualityEstimator, figures: dict, model_dir: Path) -> None:
    """Write the estimator into model_dir/metadata.json (validated) and regenerate the card."""
    from model.artifact import load_metadata, write_metadata
    from training.model_card import NOTES
    from training.model_card import render as render_card

    metadata = load_metadata(model_dir)
    metadata["quality"] = estimator.to_metadata(figures)
    write_metadata(metadata, model_dir)
    if "figures" in metadata:  # a training run's artifact: its card is rendered from its figures
        (model_dir / "MODEL_CARD.md").write_text(render_card(metadata, NOTES.read_text() if NOTES.exists() else ""))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.quality", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="training run folder with fold<k>/best.keras and folds.json")
    source.add_argument("--table", type=Path, help="a per-frame table written earlier (table.csv)")
    p.add_argument("--data", type=Path, help="with --run: the Kaggle-layout folder (or training.cache file)")
    p.add_argument("--model", type=Path, default=Path("model"), help="model folder whose post-processing to use")
    p.add_argument("--out", type=Path, required=True, help="folder for table.csv, report.json and the plots")
    p.add_argument("--install", action="store_true", help="write the estimator into --model's metadata.json")
    return p.parse_args(argv)


def fit_and_report(rows: list[dict], out: Path) -> tuple[QualityEstimator, dict]:
    """The cross-fitted figures, cut and plots of these out-of-fold rows (table.csv, report.json and the PNGs
    into `out`), and the estimator fitted on all of them for shipping. ValueError when the rows cannot carry a
    fit: fewer than two folds, or fewer than two outlined frames."""
    folds = sorted({r["fold"] for r in rows})
    if len(folds) < 2:
        raise ValueError(f"out-of-fold frames of {len(folds)} fold(s): cross-fitting needs two or more")
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, out / "table.csv")
    expected = cross_fitted(rows)
    present = np.array([r["truth_present"] for r in rows])
    cut = choose_cut(expected, present)
    subject_1_empty = [r["subject"] == 1 and not r["truth_present"] for r in rows]
    figures = {
        "evaluation": f"out-of-fold, cross-fitted over {len(folds)} folds (fitted on the others, applied to each)",
        "folds": folds,
        "rule": f"the highest cut keeping >= {COVERAGE_FLOOR:.0%} of nerve-present frames reliable, chosen on "
        "these cross-fitted frames",
        **report(rows, expected, cut),
        "subject_1_empty": report(
            [r for r, s in zip(rows, subject_1_empty, strict=True) if s], expected[subject_1_empty], cut
        )
        if any(subject_1_empty)
        else None,
    }
    plot(rows, expected, cut, out, f"quality estimate, cross-fitted over {len(folds)} folds")
    estimator = fit(rows, cut)
    (out / "report.json").write_text(
        json.dumps({"cross_fitted": figures, "shipped": estimator.to_metadata()}, indent=2)
    )
    return estimator, figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run is not None and args.data is None:
        print("error: --run needs --data", file=sys.stderr)
        return 2
    try:
        rows = collect(args.run, load_frames(args.data, args.model), args.model) if args.run else read_table(args.table)
        estimator, figures = fit_and_report(rows, args.out)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(figures, indent=2))
    if args.install:
        install(estimator, {"figures": figures}, args.model)
        print(f"installed into {args.model / 'metadata.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
