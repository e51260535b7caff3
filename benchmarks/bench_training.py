"""Training throughput of the shipped configuration on this machine's CPU cores.

    python benchmarks/bench_training.py [--model-dir model] [--steps 20]

Times real optimisation steps (augmentation included) of the architecture recorded in the shipped
metadata on synthetic batches of its input size, then projects the wall time of the shipped training
(cross-validation folds and the final fit, epochs and frame counts from metadata). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.architecture import UNetConfig  # noqa: E402
from model.artifact import MODEL_DIR, load_metadata  # noqa: E402
from model.preprocessing import InputSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--steps", type=int, default=20, help="timed optimisation steps (after 3 warm-up)")
    args = parser.parse_args()

    from training.data import Dataset, Pair
    from training.fit import Batches
    from training.recipe import artifact_augmentation, load_recipe

    meta = load_metadata(args.model_dir)
    arch_fields = {k: meta["architecture"][k] for k in ("height", "width", "base_filters", "depth", "dropout")}
    arch = UNetConfig(**arch_fields)
    spec = InputSpec.from_metadata(meta)
    batch = int(meta["training"]["batch_size"])
    n = batch * (args.steps + 3)
    rng = np.random.default_rng(0)
    images = rng.random((n, arch.height, arch.width), dtype=np.float32)
    masks = (rng.random((n, arch.height, arch.width)) > 0.97).astype(np.float32)
    pairs = [Pair(Path(f"{i}.tif"), Path(f"{i}_mask.tif"), 1, i) for i in range(n)]
    data = Dataset(pairs, images, masks, [np.zeros((1, 1), np.uint8)] * n)

    import keras

    from model.architecture import build_unet
    from training.losses import bce_dice_loss, kaggle_dice

    model = build_unet(arch)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=bce_dice_loss, metrics=[kaggle_dice])
    ranges = artifact_augmentation(meta) or load_recipe().train.augmentation
    batches = Batches(data, spec, batch, train=True, seed=0, augment=ranges)
    for i in range(3):
        model.train_on_batch(*batches[i])
    start = time.perf_counter()
    for i in range(3, 3 + args.steps):
        model.train_on_batch(*batches[i])
    seconds = time.perf_counter() - start
    per_second = args.steps * batch / seconds

    training = meta["training"]
    frames = int(meta["data"]["frames"])
    folds = int(training["folds"])
    epochs = int(training["epochs"])
    cv_frames = frames * (folds - 1) / folds * (1 - float(training.get("val_fraction", 0))) * folds
    final_epochs = int(meta.get("final_epochs") or 0)
    # A fine-tuned model's schedule starts in the run it was fine-tuned from: from scratch, both parts run.
    start = training.get("fine_tuned_from") or {}
    swa = int(training.get("swa_epochs") or 0)
    shipped_epochs = (final_epochs or epochs) + swa + int(start.get("final_epochs") or start.get("epochs") or 0)
    fold_epochs = epochs + swa + int(start.get("epochs") or 0)
    result = {
        "cpu_cores": os.cpu_count(),
        "input": f"{arch.height}x{arch.width}",
        "base_filters": arch.base_filters,
        "batch_size": batch,
        "images_per_second": round(per_second, 1),
        "one_epoch_all_frames_s": round(frames / per_second, 1),
        "shipped_fit_epochs": shipped_epochs,
        "shipped_fit_from_scratch_min": round(shipped_epochs * frames / per_second / 60, 1),
        "cross_validation_upper_bound_min": round(fold_epochs * cv_frames / per_second / 60, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
