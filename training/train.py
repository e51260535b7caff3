"""Train the U-Net with subject-wise cross-validation and write the model/ artifact.

    python -m training.train --data ../shared/data/ultrasound-nerve --out runs/cv

For each of K folds (split by subject): train on the other folds minus a few inner-validation subjects
(early stopping, best checkpoint), predict the held-out fold. Threshold and min-area are then calibrated
on out-of-fold predictions: each fold's reported figures use parameters calibrated on the *other* folds
only, and the shipped parameters on all of them. The shipped weights are either a final model trained on
every subject (--final-epochs N) or one fold's model (--ship-fold K). A stopped run resumes: finished
folds are skipped and an unfinished one continues from its last epoch.

--train-only trains the folds (and the final model) and stops: with `--data` a cache file from
training.cache, that part can run on a GPU machine under another Keras backend; the same command without
--train-only then predicts the held-out folds, calibrates and scores on the CPU under TensorFlow, from the
exact decoded frames, reusing the trained weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from model.architecture import UNetConfig
from model.artifact import MODEL_DIR, save_artifact
from model.postprocessing import PostprocessConfig
from model.preprocessing import InputSpec, normalise
from training.cache import load_any
from training.data import Dataset, DatasetError
from training.fit import TrainConfig, fit
from training.losses import LOSSES
from training.model_card import NOTES
from training.model_card import render as render_card
from training.plots import plot_training_curve
from training.scoring import calibrate, score_frames, summarise
from training.split import fold_indices, inner_validation_subjects, subject_folds

VERSION = "1.4.0"
CHANGELOG = {
    "1.0.0": "First release: U-Net + BatchNorm, BCE + soft Dice, augmentation, cosine LR, flip TTA, calibrated "
    "threshold and min-area gate; 64x96 input, 20 epochs, fold 0's model shipped.",
    "1.1.0": "96x128 input, 60 epochs, every fold model and the shipped one trained the same way (all their "
    "training subjects, last epoch, no inner validation), on a GPU under Keras' JAX backend; shipped weights "
    "trained on all 41 subjects; CV nerve-present Dice 0.771 (was 0.751).",
    "1.2.0": "Stochastic weight averaging: every 1.1.0 model (the five fold models and the shipped one) continued for "
    "5 epochs at a constant lr 3e-4 on the CPU under TensorFlow, the 5 end-of-epoch weights averaged and "
    "BatchNorm re-estimated; threshold recalibrated to 0.40; CV nerve-present Dice 0.772 (was 0.771; fold 1 "
    "0.734, was 0.718).",
    "1.3.0": "The same SWA tail at the cosine schedule's peak rate, lr 1e-3 instead of 3e-4 (chosen between the two "
    "on these folds); threshold 0.45, min-area 200; CV nerve-present Dice 0.777 (1.2.0: 0.772).",
    "1.4.0": "The same SWA tail at lr 2e-3, twice the cosine peak (chosen among 3e-4, 1e-3 and 2e-3 on these folds); "
    "threshold 0.45, min-area 210; CV nerve-present Dice 0.781 (1.3.0: 0.777).",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="Kaggle-layout folder (with train/ or the train folder), or a training.cache .npz",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, logs, curves, artifact")
    p.add_argument("--folds", type=int, default=5, help="subject-wise folds (default 5)")
    p.add_argument("--only-fold", type=int, default=None, help="train just this fold, then stop")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--lr", type=float, default=TrainConfig.learning_rate, help="peak learning rate of the cosine schedule"
    )
    p.add_argument(
        "--swa-epochs",
        type=int,
        default=0,
        help="after the cosine schedule, this many epochs at --swa-lr whose end-of-epoch weights are "
        "averaged (stochastic weight averaging); the average, with BatchNorm re-estimated, is kept",
    )
    p.add_argument(
        "--swa-lr", type=float, default=TrainConfig.swa_learning_rate, help="constant learning rate of the SWA epochs"
    )
    p.add_argument("--patience", type=int, default=6, help="early-stopping patience in epochs")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--filters", type=int, default=16, help="base filters of the U-Net")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--val-fraction", type=float, default=0.12, help="inner-validation share of training subjects")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument(
        "--loss",
        choices=sorted(LOSSES),
        default="bce_dice",
        help="bce_dice (default) or lovasz (for fine-tuning with --init-run)",
    )
    p.add_argument(
        "--init-run",
        type=Path,
        default=None,
        help="fine-tune: start fold k from INIT_RUN/fold<k>/best.keras and the final model from "
        "INIT_RUN/final/best.keras (that run must have used the same folds and data)",
    )
    ship = p.add_mutually_exclusive_group()
    ship.add_argument(
        "--final-epochs",
        type=int,
        default=None,
        help="after CV, train the shipped model on every subject for this many epochs",
    )
    ship.add_argument("--ship-fold", type=int, default=0, help="ship this fold's model (default 0)")
    p.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: calibrate, report and ship from the folds already finished in --out",
    )
    p.add_argument(
        "--only-final",
        action="store_true",
        help="train just the final model (needs --final-epochs), e.g. beside the folds, then stop",
    )
    p.add_argument(
        "--train-only",
        action="store_true",
        help="train the folds (and the final model), then stop before predicting and calibrating",
    )
    p.add_argument("--install", action="store_true", help="copy the artifact into model/ (the served model)")
    return p.parse_args(argv)


def normalisation_constants(data: Dataset, out: Path, init_run: Path | None = None) -> tuple[float, float]:
    """Mean and std of the training pixels, stored in metadata so serving normalises identically.

    Kept in the run folder: a resumed run (maybe reading the frames from a cache) evaluates and ships weights
    with exactly the constants they were trained with. A fine-tuning run takes its init run's constants, which
    its starting weights were trained with."""
    saved = out / "normalisation.json"
    inherited = init_run / "normalisation.json" if init_run is not None else None
    if not saved.exists() and inherited is not None and inherited.exists():
        saved.write_text(inherited.read_text())
    if saved.exists():
        values = json.loads(saved.read_text())
        return float(values["mean"]), float(values["std"])
    mean, std = float(data.images.mean()), float(data.images.std())
    saved.write_text(json.dumps({"mean": mean, "std": std}))
    return mean, std


def base_metadata(args: argparse.Namespace, arch: UNetConfig, spec: InputSpec, cfg: TrainConfig) -> dict:
    import keras

    metadata = {
        "name": "brachial-plexus-unet",
        "version": VERSION,
        "changelog": CHANGELOG,
        "intended_use": "Research only; not a medical device.",
        "input": {
            "height": arch.height,
            "width": arch.width,
            "channels": 1,
            "dtype": "float32",
            "layout": "NHWC",
            "value_range": "grayscale scaled to [0, 1] by bit depth, then normalised",
            "resize": "area when shrinking, bilinear when enlarging (OpenCV)",
            "normalisation": {"mean": spec.mean, "std": spec.std},
        },
        "output": {
            "shape": [arch.height, arch.width, 1],
            "dtype": "float32",
            "value_range": [0.0, 1.0],
            "meaning": "per-pixel nerve probability (sigmoid); resized back to the input size",
        },
        "architecture": {"type": "U-Net", **arch.to_dict()},
        "training": {
            **cfg.to_dict(),
            "loss": LOSSES[cfg.loss][1],
            "optimizer": "Adam",
            "schedule": schedule_text(cfg),
            "folds": args.folds,
            "val_fraction": args.val_fraction,
        },
        "versions": {
            "keras": keras.__version__,
            "backend": backend_version(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "seed": cfg.seed,
    }
    if args.init_run is not None:
        metadata["training"]["fine_tuned_from"] = init_run_training(args.init_run)
    return metadata


def schedule_text(cfg: TrainConfig) -> str:
    """The learning-rate schedule in words, for metadata and the card."""
    parts = [f"cosine with linear warm-up over {cfg.epochs} epochs"] if cfg.epochs else []
    if cfg.swa_epochs:
        parts.append(
            f"{cfg.swa_epochs} epochs at constant lr {cfg.swa_learning_rate:g} whose end-of-epoch "
            "weights are averaged (SWA), BatchNorm statistics re-estimated on the training frames"
        )
    return ", then ".join(parts)


def final_schedule_words(args: argparse.Namespace) -> str:
    """How long the shipped model trained, in words, counting the run it was fine-tuned from."""
    parts = [f"{args.final_epochs} epochs"] if args.final_epochs else []
    if args.init_run is not None:
        start = init_run_training(args.init_run)
        source = f"model {start['version']}" if start.get("version") else str(args.init_run)
        parts.insert(
            0,
            f"{start['final_epochs']} epochs ({source})"
            if start.get("final_epochs")
            else f"the final model of {source}",
        )
    if args.swa_epochs:
        parts.append(f"{args.swa_epochs} SWA epochs")
    return " + ".join(parts)


def epochs_problem(args: argparse.Namespace) -> str | None:
    """Why the requested fits would train nothing (None when they train). Zero cosine epochs make sense only
    with SWA epochs, e.g. an SWA tail fine-tuned onto an earlier run (--init-run)."""
    for flag, epochs in (("--epochs", args.epochs), ("--final-epochs", args.final_epochs)):
        if epochs is not None and epochs < 0:
            return f"{flag} must be >= 0"
        if epochs == 0 and args.swa_epochs <= 0:
            return f"{flag} 0 trains nothing without --swa-epochs"
    if args.swa_epochs < 0:
        return "--swa-epochs must be >= 0"
    return None


def init_run_training(init_run: Path) -> dict:
    """The training section of the run a fine-tuning started from (its model/metadata.json), with its final
    model's epochs: together with this run's they make the whole schedule of the shipped weights."""
    path = init_run / "model" / "metadata.json"
    if not path.exists():
        return {"run": str(init_run)}
    metadata = json.loads(path.read_text())
    return {**metadata["training"], "final_epochs": metadata.get("final_epochs"), "version": metadata.get("version")}


def check_init_run(init_run: Path, folds: list[list[int]], final: bool) -> str | None:
    """Why `init_run` cannot seed this run (None when it can). Its folds must be these folds, or a fold model
    would start from weights that have seen its held-out subjects; with `final` its final model must exist."""
    saved = init_run / "folds.json"
    if not saved.exists():
        return f"{saved} is missing: --init-run needs a training run folder"
    if json.loads(saved.read_text()) != folds:
        return f"{saved}: that run's folds differ from this run's, so its fold models saw these held-out subjects"
    wanted = [init_run / f"fold{k}" / "best.keras" for k in range(len(folds))]
    wanted += [init_run / "final" / "best.keras"] if final else []
    missing = [str(path) for path in wanted if not path.exists()]
    if missing:
        return f"{', '.join(missing)}: missing"
    return None


def backend_version() -> str:
    """'tensorflow 2.21.0', 'jax 0.11.2', ...: the Keras backend the weights were trained under."""
    import importlib

    import keras

    name = keras.backend.backend()
    return f"{name} {getattr(importlib.import_module(name), '__version__', '?')}"


def train_fold(
    k: int,
    folds: list[list[int]],
    data: Dataset,
    arch: UNetConfig,
    spec: InputSpec,
    cfg: TrainConfig,
    args: argparse.Namespace,
) -> None:
    """Train fold k's model into fold<k>/best.keras, unless fold<k>/fold.json says it is already trained."""
    fold_dir = args.out / f"fold{k}"
    if (fold_dir / "fold.json").exists():
        print(f"fold {k}: trained earlier, reusing {fold_dir / 'best.keras'}", flush=True)
        return
    test_subjects = folds[k]
    train_subjects = sorted(s for i, f in enumerate(folds) if i != k for s in f)
    # With a single training subject there is nothing to hold out: train for the fixed epochs instead.
    val_subjects = (
        inner_validation_subjects(train_subjects, args.val_fraction, cfg.seed + k)
        if len(train_subjects) > 1 and args.val_fraction > 0
        else []
    )
    fit_subjects = [s for s in train_subjects if s not in val_subjects]
    print(f"fold {k}: test subjects {test_subjects}, inner validation {val_subjects}", flush=True)
    started = time.time()
    init = args.init_run / f"fold{k}" / "best.keras" if args.init_run else None
    _, history = fit(
        data.subset(fold_indices(data.subjects, fit_subjects)),
        data.subset(fold_indices(data.subjects, val_subjects)),
        arch,
        spec,
        cfg,
        fold_dir,
        init,
    )
    plot_training_curve(fold_dir / "log.csv", fold_dir / "curve.png", f"fold {k}")
    val_dice = history.get("val_kaggle_dice")
    epochs_run = len(history["loss"])
    (fold_dir / "fold.json").write_text(
        json.dumps(
            {
                "test_subjects": test_subjects,
                "inner_validation_subjects": val_subjects,
                "training_subjects": fit_subjects,
                # Without inner validation the last epoch is the model kept.
                "best_epoch": int(np.argmax(val_dice)) + 1 if val_dice else epochs_run,
                "epochs_run": epochs_run,
                "seconds": round(time.time() - started, 1),
                "backend": backend_version(),
            },
            indent=2,
        )
    )


def fold_maps(k: int, folds: list[list[int]], data: Dataset, spec: InputSpec, args: argparse.Namespace) -> dict:
    """Fold k's out-of-fold probability maps (its trained model on its held-out subjects), cached."""
    import keras

    from model.segmenter import Segmenter

    fold_dir = args.out / f"fold{k}"
    done = fold_dir / "oof.npz"
    if done.exists():
        saved = np.load(done)
        return {"index": saved["index"], "maps": saved["maps"], "best_epoch": int(saved["best_epoch"])}
    model = keras.models.load_model(fold_dir / "best.keras", compile=False)
    index = fold_indices(data.subjects, folds[k])
    # The held-out maps are what calibration sees, so they get the flip TTA the shipped model is served with.
    segmenter = Segmenter.from_keras(model, spec, PostprocessConfig(0.5, 0, spec.height, spec.width, tta_hflip=True))
    maps = segmenter.probability_maps(normalise(data.images[index], spec))
    best_epoch = json.loads((fold_dir / "fold.json").read_text())["best_epoch"]
    np.savez(done, index=index, maps=maps, best_epoch=best_epoch)
    return {"index": index, "maps": maps, "best_epoch": best_epoch}


def train_final(data: Dataset, arch: UNetConfig, spec: InputSpec, cfg: TrainConfig, args: argparse.Namespace):
    """The shipped model on every subject for --final-epochs (reused when final/best.keras exists: without
    validation it is written only once training has finished)."""
    import keras

    final_dir = args.out / "final"
    if (final_dir / "best.keras").exists():
        print(f"final model: trained earlier, reusing {final_dir / 'best.keras'}", flush=True)
        return keras.models.load_model(final_dir / "best.keras", compile=False)
    final_cfg = TrainConfig(**{**cfg.to_dict(), "epochs": args.final_epochs})
    started = time.time()
    init = args.init_run / "final" / "best.keras" if args.init_run else None
    model, _ = fit(data, None, arch, spec, final_cfg, final_dir, init)
    plot_training_curve(final_dir / "log.csv", final_dir / "curve.png", "final (all subjects)")
    (final_dir / "final.json").write_text(
        json.dumps(
            {"epochs": args.final_epochs, "seconds": round(time.time() - started, 1), "backend": backend_version()}
        )
    )
    return model


def cross_fitted_figures(
    results: list[dict], data: Dataset, post: PostprocessConfig, fold_ids: list[int]
) -> list[dict]:
    """Per-fold held-out figures, each with threshold/min-area calibrated on the other folds only."""
    per_fold = []
    for k, (fold_id, res) in enumerate(zip(fold_ids, results, strict=True)):
        others = [r for i, r in enumerate(results) if i != k]
        maps = np.concatenate([r["maps"] for r in others])
        masks = [data.full_masks[i] for r in others for i in r["index"]]
        chosen = calibrate(maps, masks, post)
        fold_post = PostprocessConfig(chosen["threshold"], chosen["min_area_px"], post.model_height, post.model_width)
        scores = score_frames(res["maps"], [data.full_masks[i] for i in res["index"]], fold_post)
        per_fold.append(
            {
                "fold": fold_id,
                "subjects": sorted({int(data.subjects[i]) for i in res["index"]}),
                "threshold": chosen["threshold"],
                "min_area_px": chosen["min_area_px"],
                **summarise(scores),
            }
        )
    return per_fold


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only_final and args.final_epochs is None:
        print("error: --only-final needs --final-epochs", file=sys.stderr)
        return 2
    if problem := epochs_problem(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    arch = UNetConfig(height=args.height, width=args.width, base_filters=args.filters, depth=args.depth)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        patience=args.patience,
        seed=args.seed,
        augment=not args.no_augment,
        loss=args.loss,
        swa_epochs=args.swa_epochs,
        swa_learning_rate=args.swa_lr,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        data = load_any(args.data, arch.height, arch.width)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    folds = subject_folds(data.subjects, args.folds, args.seed)
    if args.init_run is not None and (problem := check_init_run(args.init_run, folds, args.final_epochs is not None)):
        print(f"error: --init-run: {problem}", file=sys.stderr)
        return 2
    mean, std = normalisation_constants(data, args.out, args.init_run)
    spec = InputSpec(arch.height, arch.width, mean, std)
    print(f"{len(data)} frames, {len(np.unique(data.subjects))} subjects, folds: {folds}", flush=True)
    (args.out / "folds.json").write_text(json.dumps(folds))

    if args.only_final:
        train_final(data, arch, spec, cfg, args)
        return 0
    wanted = range(args.folds) if args.only_fold is None else [args.only_fold]
    if args.finished_only:
        wanted = [k for k in range(args.folds) if (args.out / f"fold{k}" / "fold.json").exists()]
        if len(wanted) < 2:
            print(f"error: {args.out}: fewer than two trained folds to summarise", file=sys.stderr)
            return 2
    else:
        for k in wanted:
            train_fold(k, folds, data, arch, spec, cfg, args)
    if args.train_only:
        if args.final_epochs is not None and args.only_fold is None:
            train_final(data, arch, spec, cfg, args)
        return 0
    results = [fold_maps(k, folds, data, spec, args) for k in wanted]
    if args.only_fold is not None:
        return 0

    post = PostprocessConfig(0.5, 0, arch.height, arch.width)
    per_fold = cross_fitted_figures(results, data, post, list(wanted))
    all_maps = np.concatenate([r["maps"] for r in results])
    all_masks = [data.full_masks[i] for r in results for i in r["index"]]
    shipped_post = calibrate(all_maps, all_masks, post)
    keys = ("nerve_present_dice", "kaggle_dice", "presence_recall")
    mean = {key: float(np.mean([f[key] for f in per_fold if f[key] is not None])) for key in keys}
    empties = [f for f in per_fold if f["empty_frames"]]
    mean["empty_kept_empty"] = (
        f"{sum(f['empty_kept_empty'] for f in empties)}/{sum(f['empty_frames'] for f in empties)}"
    )

    metadata = base_metadata(args, arch, spec, cfg)
    metadata["postprocessing"] = {
        "threshold": shipped_post["threshold"],
        "min_area_px": shipped_post["min_area_px"],
        "min_area_units": "model-input pixels, scaled by image area",
        "tta": ["hflip"],
        "calibration": shipped_post,
    }
    metadata["data"] = {
        "source": "Kaggle Ultrasound Nerve Segmentation (2016), Kaggle layout",
        "frames": len(data),
        "subjects": sorted(int(s) for s in np.unique(data.subjects)),
        "nerve_present_frames": int(sum(m.any() for m in data.full_masks)),
    }
    metadata["folds"] = [{"fold": k, "subjects": f} for k, f in enumerate(folds)]
    metadata["figures"] = {
        "evaluation": "subject-held-out, cross-fitted calibration",
        "per_fold": per_fold,
        "mean": mean,
    }

    if args.final_epochs is not None:
        model = train_final(data, arch, spec, cfg, args)
        metadata["final_epochs"] = args.final_epochs
        metadata["training"]["backend"] = json.loads((args.out / "final" / "final.json").read_text())["backend"]
        metadata["shipped_weights"] = (
            f"trained on all {len(np.unique(data.subjects))} subjects "
            f"({final_schedule_words(args)}) after cross-validation"
        )
    else:
        import keras

        model = keras.models.load_model(args.out / f"fold{args.ship_fold}" / "best.keras", compile=False)
        metadata["shipped_fold"] = args.ship_fold
        fold_info = json.loads((args.out / f"fold{args.ship_fold}" / "fold.json").read_text())
        metadata["training"]["backend"] = fold_info.get("backend", backend_version())
        metadata["shipped_weights"] = (
            f"fold {args.ship_fold}'s model: trained on the other folds' subjects; "
            f"its own held-out figures are fold {args.ship_fold}'s row"
        )
    notes = NOTES.read_text() if NOTES.exists() else ""
    targets = [args.out / "model"] + ([MODEL_DIR] if args.install else [])
    for target in targets:
        written = save_artifact(model, metadata, target)
        (target / "MODEL_CARD.md").write_text(render_card(written, notes))
    (args.out / "summary.json").write_text(json.dumps(metadata["figures"], indent=2))
    print(json.dumps({"mean": mean, "postprocessing": shipped_post}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
