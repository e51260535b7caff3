"""Train the U-Net with subject-wise cross-validation and write the model/ artifact.

    python -m training.train --data ../shared/data/ultrasound-nerve --out runs/cv [--install]

What is trained is the recipe (training/recipes/, read by training.recipe): the shipped one by default,
another with --recipe FILE, and each flag below overrides one of its values for this run. For each of K
folds (split by subject): train on the other folds (minus a few inner-validation subjects when the recipe
has a val_fraction: early stopping, best checkpoint), predict the held-out fold. Threshold and min-area are
then calibrated on out-of-fold predictions: each fold's reported figures use parameters calibrated on the
*other* folds only, and the shipped parameters on all of them. The shipped weights are a final model trained
on every subject (the recipe's final_epochs, or --final-epochs N) or one fold's model (--ship-fold K, which
trains no final model). The quality estimate (training.quality) is then fitted on the same out-of-fold
predictions and written into the artifact, so a retrained model ships with its own `expected_dice`. A stopped
run resumes: finished folds are skipped and an unfinished one continues from its last epoch.

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
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np

from model.architecture import UNetConfig
from model.artifact import MODEL_DIR, save_artifact
from model.onnx_export import export_onnx
from model.postprocessing import PostprocessConfig
from model.preprocessing import InputSpec, normalise
from training.cache import load_any
from training.data import Dataset, DatasetError
from training.fit import TrainConfig, fit
from training.losses import LOSSES
from training.model_card import NOTES
from training.model_card import render as render_card
from training.plots import plot_training_curve
from training.recipe import SHIPPED, RecipeError, RunConfig, load_recipe
from training.scoring import calibrate, score_frames, summarise
from training.split import fold_indices, inner_validation_subjects, subject_folds

# Flags that override one recipe value each: flag -> ("section.key", type, help). Unset (None), the recipe's stands.
OVERRIDES: dict[str, tuple[str, type, str]] = {
    "--folds": ("cross_validation.folds", int, "subject-wise folds"),
    "--val-fraction": ("cross_validation.val_fraction", float, "inner-validation share of training subjects"),
    "--height": ("architecture.height", int, "model input height"),
    "--width": ("architecture.width", int, "model input width"),
    "--filters": ("architecture.base_filters", int, "base filters of the U-Net"),
    "--depth": ("architecture.depth", int, "U-Net levels"),
    "--epochs": ("schedule.epochs", int, "cosine-schedule epochs of every fold model"),
    "--batch-size": ("schedule.batch_size", int, "frames per batch"),
    "--lr": ("schedule.learning_rate", float, "peak learning rate of the cosine schedule"),
    "--swa-epochs": (
        "schedule.swa_epochs",
        int,
        "after the cosine schedule, this many epochs at --swa-lr whose end-of-epoch weights are averaged "
        "(stochastic weight averaging); the average, with BatchNorm re-estimated, is kept",
    ),
    "--swa-lr": ("schedule.swa_learning_rate", float, "constant learning rate of the SWA epochs"),
    "--patience": ("schedule.patience", int, "early-stopping patience in epochs (with inner validation)"),
    "--seed": ("schedule.seed", int, "seed of the folds, the initial weights, the shuffles and the augmentation"),
    "--loss": ("schedule.loss", str, "bce_dice, or lovasz for fine-tuning with --init-run"),
}


def parser() -> argparse.ArgumentParser:
    shipped = tomllib.loads(SHIPPED.read_text())

    def recipe_default(key: str) -> str:
        section, name = key.split(".")
        return (
            f"{shipped[section][name]:g}" if isinstance(shipped[section][name], float) else str(shipped[section][name])
        )

    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__.split("\n\n")[0],
        epilog=f"Defaults are the recipe's; (shipped: N) is the value in {SHIPPED.name}.",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="Kaggle-layout folder (with train/ or the train folder), or a training.cache .npz",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, logs, curves, artifact")
    p.add_argument(
        "--recipe", type=Path, default=SHIPPED, help=f"recipe file (default {SHIPPED.relative_to(SHIPPED.parents[2])})"
    )
    for flag, (key, kind, words) in OVERRIDES.items():
        extra = {"choices": sorted(LOSSES)} if flag == "--loss" else {}
        p.add_argument(flag, type=kind, default=None, help=f"{words} (shipped: {recipe_default(key)})", **extra)
    p.add_argument(
        "--no-augment", dest="augment", action="store_false", default=None, help="train without augmentation"
    )
    ship = p.add_mutually_exclusive_group()
    ship.add_argument(
        "--final-epochs",
        type=int,
        default=None,
        help="after CV, train the shipped model on every subject for this many cosine epochs (plus the SWA tail) "
        f"(shipped: {shipped['shipped'].get('final_epochs', 'none')})",
    )
    ship.add_argument(
        "--ship-fold", type=int, default=None, help="ship this fold's model instead, and train no final model"
    )
    p.add_argument("--only-fold", type=int, default=None, help="train just this fold, then stop")
    p.add_argument(
        "--init-run",
        type=Path,
        default=None,
        help="fine-tune: start fold k from INIT_RUN/fold<k>/best.keras and the final model from "
        "INIT_RUN/final/best.keras (that run must have used the same folds and data)",
    )
    p.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: calibrate, report and ship from the folds already finished in --out",
    )
    p.add_argument(
        "--only-final",
        action="store_true",
        help="train just the final model (not with --ship-fold), e.g. beside the folds, then stop",
    )
    p.add_argument(
        "--train-only",
        action="store_true",
        help="train the folds (and the final model), then stop before predicting and calibrating",
    )
    p.add_argument("--install", action="store_true", help="copy the artifact into model/ (the served model)")
    return p


def run_config(argv: list[str] | None = None) -> RunConfig:
    """The run the command line asks for: its recipe with the flags' overrides applied (RecipeError if that
    cannot be trained)."""
    args = parser().parse_args(argv)
    overrides = {key: getattr(args, flag[2:].replace("-", "_")) for flag, (key, _, _) in OVERRIDES.items()}
    overrides["augmentation.enabled"] = args.augment
    overrides["shipped.final_epochs"] = args.final_epochs
    overrides["shipped.ship_fold"] = args.ship_fold
    recipe = load_recipe(args.recipe, {key: value for key, value in overrides.items() if value is not None})
    return RunConfig(
        recipe=recipe,
        data=args.data,
        out=args.out,
        init_run=args.init_run,
        only_fold=args.only_fold,
        only_final=args.only_final,
        finished_only=args.finished_only,
        train_only=args.train_only,
        install=args.install,
    )


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


def base_metadata(run: RunConfig, arch: UNetConfig, spec: InputSpec, cfg: TrainConfig) -> dict:
    """The metadata every artifact of this run shares: the recipe's name, version, architecture and schedule
    (`cfg`: the fold models' fit), the recipe file with this run's overrides, and the software versions."""
    import keras

    recipe = run.recipe
    metadata = {
        "name": recipe.name,
        "version": recipe.version,
        "changelog": dict(recipe.changelog),
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
            "folds": recipe.folds,
            "val_fraction": recipe.val_fraction,
            "recipe": recipe.provenance(),
        },
        "versions": {
            "keras": keras.__version__,
            "backend": backend_version(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "seed": cfg.seed,
    }
    if run.init_run is not None:
        metadata["training"]["fine_tuned_from"] = init_run_training(run.init_run)
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


def final_schedule_words(run: RunConfig) -> str:
    """How long the shipped model trained, in words, counting the run it was fine-tuned from."""
    recipe = run.recipe
    parts = [f"{recipe.final_epochs} epochs"] if recipe.final_epochs else []
    if run.init_run is not None:
        start = init_run_training(run.init_run)
        source = f"model {start['version']}" if start.get("version") else str(run.init_run)
        parts.insert(
            0,
            f"{start['final_epochs']} epochs ({source})"
            if start.get("final_epochs")
            else f"the final model of {source}",
        )
    if recipe.train.swa_epochs:
        parts.append(f"{recipe.train.swa_epochs} SWA epochs")
    return " + ".join(parts)


def run_problem(run: RunConfig) -> str | None:
    """Why this run cannot go ahead (None when it can), before any data is read. Zero cosine epochs make sense
    only with SWA epochs, e.g. an SWA tail fine-tuned onto an earlier run (--init-run)."""
    recipe = run.recipe
    swa_epochs = recipe.train.swa_epochs
    for flag, epochs in (("--epochs", recipe.train.epochs), ("--final-epochs", recipe.final_epochs)):
        if epochs is not None and epochs < 0:
            return f"{flag} must be >= 0"
        if epochs == 0 and swa_epochs <= 0:
            return f"{flag} 0 trains nothing without --swa-epochs"
    if swa_epochs < 0:
        return "--swa-epochs must be >= 0"
    if run.only_final and recipe.final_epochs is None:
        return f"--only-final needs --final-epochs: this run ships fold {recipe.ship_fold} and trains no final model"
    if run.only_fold is not None and not 0 <= run.only_fold < recipe.folds:
        return f"--only-fold {run.only_fold}: the folds are 0-{recipe.folds - 1}"
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
    run: RunConfig,
) -> None:
    """Train fold k's model into fold<k>/best.keras, unless fold<k>/fold.json says it is already trained."""
    fold_dir = run.out / f"fold{k}"
    if (fold_dir / "fold.json").exists():
        print(f"fold {k}: trained earlier, reusing {fold_dir / 'best.keras'}", flush=True)
        return
    test_subjects = folds[k]
    train_subjects = sorted(s for i, f in enumerate(folds) if i != k for s in f)
    # With a single training subject there is nothing to hold out: train for the fixed epochs instead.
    val_subjects = (
        inner_validation_subjects(train_subjects, run.recipe.val_fraction, cfg.seed + k)
        if len(train_subjects) > 1 and run.recipe.val_fraction > 0
        else []
    )
    fit_subjects = [s for s in train_subjects if s not in val_subjects]
    print(f"fold {k}: test subjects {test_subjects}, inner validation {val_subjects}", flush=True)
    started = time.time()
    init = run.init_run / f"fold{k}" / "best.keras" if run.init_run else None
    _, history = fit(
        data.subset(fold_indices(data.subjects, fit_subjects)),
        data.subset(fold_indices(data.subjects, val_subjects)),
        arch,
        spec,
        cfg,
        fold_dir,
        init,
    )
    plot_training_curve(history, fold_dir / "curve.png", f"fold {k}")
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


def fold_maps(k: int, folds: list[list[int]], data: Dataset, spec: InputSpec, run: RunConfig) -> dict:
    """Fold k's out-of-fold probability maps (its trained model on its held-out subjects), cached."""
    import keras

    from model.segmenter import Segmenter

    fold_dir = run.out / f"fold{k}"
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


def train_final(data: Dataset, arch: UNetConfig, spec: InputSpec, cfg: TrainConfig, run: RunConfig):
    """The shipped model on every subject for the recipe's final_epochs (reused when final/best.keras exists:
    without validation it is written only once training has finished)."""
    import keras

    final_dir = run.out / "final"
    if (final_dir / "best.keras").exists():
        print(f"final model: trained earlier, reusing {final_dir / 'best.keras'}", flush=True)
        return keras.models.load_model(final_dir / "best.keras", compile=False)
    final_cfg = replace(cfg, epochs=run.recipe.final_epochs)
    started = time.time()
    init = run.init_run / "final" / "best.keras" if run.init_run else None
    model, history = fit(data, None, arch, spec, final_cfg, final_dir, init)
    plot_training_curve(history, final_dir / "curve.png", "final (all subjects)")
    (final_dir / "final.json").write_text(
        json.dumps(
            {
                "epochs": run.recipe.final_epochs,
                "seconds": round(time.time() - started, 1),
                "backend": backend_version(),
            }
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


def fit_quality(run: RunConfig, data: Dataset, targets: list[Path]) -> None:
    """The quality estimate, fitted on this run's own out-of-fold predictions (each frame by the fold model that
    never saw its subject, post-processed as the run's artifact serves it) and written into every artifact the
    run wrote, so that a retrained model never ships without it. Its table, report and plots go into
    `<out>/quality`. A run whose folds outline too few frames to fit it ships without one and says so."""
    from training import quality

    try:
        rows = quality.collect(run.out, data, run.out / "model")
        estimator, figures = quality.fit_and_report(rows, run.out / "quality")
    except ValueError as exc:
        print(f"no quality estimate ({exc}): the model ships without expected_dice and reliable", file=sys.stderr)
        return
    for target in targets:
        quality.install(estimator, {"figures": figures}, target)
    print(f"quality estimate: failure AUROC {figures['failure_auroc']}, cut {figures['cut']:.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        run = run_config(argv)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if problem := run_problem(run):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    recipe, arch, cfg = run.recipe, run.recipe.arch, run.recipe.train
    run.out.mkdir(parents=True, exist_ok=True)
    try:
        data = load_any(run.data, arch.height, arch.width)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    folds = subject_folds(data.subjects, recipe.folds, cfg.seed)
    final = recipe.final_epochs is not None
    if run.init_run is not None and (problem := check_init_run(run.init_run, folds, final)):
        print(f"error: --init-run: {problem}", file=sys.stderr)
        return 2
    mean, std = normalisation_constants(data, run.out, run.init_run)
    spec = InputSpec(arch.height, arch.width, mean, std)
    print(f"{len(data)} frames, {len(np.unique(data.subjects))} subjects, folds: {folds}", flush=True)
    (run.out / "folds.json").write_text(json.dumps(folds))

    if run.only_final:
        train_final(data, arch, spec, cfg, run)
        return 0
    wanted = range(recipe.folds) if run.only_fold is None else [run.only_fold]
    if run.finished_only:
        wanted = [k for k in range(recipe.folds) if (run.out / f"fold{k}" / "fold.json").exists()]
        if len(wanted) < 2:
            print(f"error: {run.out}: fewer than two trained folds to summarise", file=sys.stderr)
            return 2
    else:
        for k in wanted:
            train_fold(k, folds, data, arch, spec, cfg, run)
    if run.train_only:
        if final and run.only_fold is None:
            train_final(data, arch, spec, cfg, run)
        return 0
    results = [fold_maps(k, folds, data, spec, run) for k in wanted]
    if run.only_fold is not None:
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

    metadata = base_metadata(run, arch, spec, cfg)
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

    if final:
        model = train_final(data, arch, spec, cfg, run)
        metadata["final_epochs"] = recipe.final_epochs
        metadata["training"]["backend"] = json.loads((run.out / "final" / "final.json").read_text())["backend"]
        metadata["shipped_weights"] = (
            f"trained on all {len(np.unique(data.subjects))} subjects "
            f"({final_schedule_words(run)}) after cross-validation"
        )
    else:
        import keras

        ship = recipe.ship_fold
        model = keras.models.load_model(run.out / f"fold{ship}" / "best.keras", compile=False)
        metadata["shipped_fold"] = ship
        fold_info = json.loads((run.out / f"fold{ship}" / "fold.json").read_text())
        metadata["training"]["backend"] = fold_info.get("backend", backend_version())
        metadata["shipped_weights"] = (
            f"fold {ship}'s model: trained on the other folds' subjects; its own held-out figures are fold {ship}'s row"
        )
    notes = NOTES.read_text() if NOTES.exists() else ""
    targets = [run.out / "model"] + ([MODEL_DIR] if run.install else [])
    for target in targets:
        written = save_artifact(model, metadata, target)
        # The served artifact sits beside the weights wherever they go, so every documented start (make run,
        # plain gunicorn, the image) serves through onnxruntime without an extra command.
        export_onnx(target)
        (target / "MODEL_CARD.md").write_text(render_card(written, notes))
    fit_quality(run, data, targets)
    (run.out / "summary.json").write_text(json.dumps(metadata["figures"], indent=2))
    print(json.dumps({"mean": mean, "postprocessing": shipped_post}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
