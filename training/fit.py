"""Fitting one U-Net: tf.data pipeline, cosine learning rate, Keras callbacks.

Keras' own callbacks do the bookkeeping: BackupAndRestore makes an interrupted run resume where it stopped,
ModelCheckpoint keeps the epoch with the best validation Dice, EarlyStopping ends a run that stopped
improving, CSVLogger keeps the curve.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import tensorflow as tf

from model.architecture import UNetConfig, build_unet
from model.preprocessing import InputSpec, standardise
from training.augment import Augmenter
from training.data import Dataset
from training.losses import bce_dice_loss, kaggle_dice

MONITOR = "val_kaggle_dice"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    min_lr_fraction: float = 0.01
    warmup_epochs: int = 1
    patience: int = 6
    seed: int = 42
    augment: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def make_dataset(data: Dataset, spec: InputSpec, batch_size: int, *, train: bool,
                 seed: int, augment: bool) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((data.images[..., None], data.masks[..., None]))
    if train:
        ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if train and augment:
        ds = ds.map(Augmenter(seed))
    return ds.map(lambda x, y: (standardise(x, spec), y)).prefetch(tf.data.AUTOTUNE)


def fit(train: Dataset, val: Dataset | None, arch: UNetConfig, spec: InputSpec, cfg: TrainConfig,
        out_dir: Path) -> tuple[keras.Model, dict]:
    """Train one model; returns the best (or, without validation, the last) model and its history."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    model = build_unet(arch)
    steps = math.ceil(len(train) / cfg.batch_size)
    warmup = steps * cfg.warmup_epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.learning_rate * 0.1, decay_steps=max(1, steps * cfg.epochs - warmup),
        alpha=cfg.min_lr_fraction * 0.1, warmup_target=cfg.learning_rate, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=bce_dice_loss, metrics=[kaggle_dice])

    best_path = out_dir / "best.keras"
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.BackupAndRestore(str(out_dir / "backup")),
        keras.callbacks.CSVLogger(str(out_dir / "log.csv"), append=True),
    ]
    val_ds = None
    if val is not None and len(val):
        val_ds = make_dataset(val, spec, cfg.batch_size, train=False, seed=cfg.seed, augment=False)
        callbacks += [
            keras.callbacks.ModelCheckpoint(str(best_path), monitor=MONITOR, mode="max", save_best_only=True),
            keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.patience),
        ]
    history = model.fit(
        make_dataset(train, spec, cfg.batch_size, train=True, seed=cfg.seed, augment=cfg.augment),
        validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, shuffle=False,  # tf.data shuffles
        verbose=1 if sys.stdout.isatty() else 2,
    )
    if val_ds is None:
        model.save(best_path)
    else:
        model = keras.models.load_model(best_path, compile=False)
    return model, history.history
