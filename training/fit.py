"""Fitting one U-Net: batches from NumPy, cosine learning rate, Keras callbacks.

Batches come from a `keras.utils.PyDataset`, not tf.data, so the same training runs on any Keras backend:
TensorFlow on the CPU (the supported path) or JAX/PyTorch on a GPU machine, whose weights load and predict
the same under TensorFlow. Keras' own callbacks do the bookkeeping: BackupAndRestore makes an interrupted
run resume where it stopped, ModelCheckpoint keeps the epoch with the best validation Dice, EarlyStopping
ends a run that stopped improving, CSVLogger keeps the curve.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from model.architecture import UNetConfig, build_unet
from model.preprocessing import InputSpec, standardise
from training.augment import Augmentation, augment_batch
from training.data import Dataset
from training.losses import LOSSES, kaggle_dice
from training.swa import ConstantTail, WeightAverage, reestimate_batchnorm

MONITOR = "val_kaggle_dice"


@dataclass(frozen=True)
class TrainConfig:
    """How one model is fitted. No defaults here: every value comes from the recipe (training/recipe.py)."""

    epochs: int  # cosine schedule, warm-up included
    batch_size: int
    learning_rate: float  # the cosine schedule's peak
    min_lr_fraction: float
    warmup_epochs: int
    patience: int  # early stopping, only with validation frames and no SWA tail
    seed: int
    augment: bool
    loss: str  # a key of training.losses.LOSSES
    swa_epochs: int  # after `epochs`: this many at swa_learning_rate, their end-of-epoch weights averaged
    swa_learning_rate: float
    augmentation: Augmentation  # its ranges, applied when `augment`

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r} is not one of {', '.join(sorted(LOSSES))}")
        if self.batch_size < 1 or self.warmup_epochs < 0 or self.patience < 1:
            raise ValueError("batch_size and patience must be positive, warmup_epochs >= 0")
        if self.learning_rate <= 0 or self.swa_learning_rate <= 0 or not 0 <= self.min_lr_fraction <= 1:
            raise ValueError("learning rates must be positive and min_lr_fraction in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


class Batches(keras.utils.PyDataset):
    """Normalised (image, mask) batches; for training shuffled each epoch and augmented with `augment`'s ranges
    (None: not augmented).

    Order and augmentation are drawn from generators seeded with (seed, epoch[, batch]), so they do not depend
    on how Keras schedules the calls.
    """

    def __init__(
        self, data: Dataset, spec: InputSpec, batch_size: int, *, train: bool, seed: int, augment: Augmentation | None
    ) -> None:
        super().__init__()
        self.images, self.masks, self.spec = data.images, data.masks, spec
        self.batch_size, self.train, self.seed, self.augment = batch_size, train, seed, augment
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.train:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        images = self.images[chosen].astype(np.float32)
        masks = self.masks[chosen].astype(np.float32)
        if self.train and self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            images, masks = augment_batch(images, masks, rng, self.augment)
        return standardise(images, self.spec)[..., None], masks[..., None]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def fit(
    train: Dataset,
    val: Dataset | None,
    arch: UNetConfig,
    spec: InputSpec,
    cfg: TrainConfig,
    out_dir: Path,
    init: Path | None = None,
) -> tuple[keras.Model, dict]:
    """Train one model, from scratch or (fine-tuning) from the weights in `init`; returns the kept model and
    its history (every epoch, resumed or not: logged_history). Kept is the weight average of the SWA epochs
    when there are any; otherwise the epoch with the best validation Dice, or without validation the last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    model = build_unet(arch)
    if init is not None:
        model.set_weights(keras.models.load_model(init, compile=False).get_weights())
    steps = math.ceil(len(train) / cfg.batch_size)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate_schedule(cfg, steps)),
        loss=LOSSES[cfg.loss][0],
        metrics=[kaggle_dice],
    )

    best_path = out_dir / "best.keras"
    average = WeightAverage(cfg.epochs, out_dir / "swa.npz") if cfg.swa_epochs else None
    # The average is saved before BackupAndRestore's checkpoint, so a resumed fit never loses an epoch of it.
    callbacks: list[keras.callbacks.Callback] = [average] if average else []
    callbacks += [
        keras.callbacks.BackupAndRestore(str(out_dir / "backup")),
        keras.callbacks.CSVLogger(str(out_dir / "log.csv"), append=True),
    ]
    val_batches = None
    if val is not None and len(val):
        val_batches = Batches(val, spec, cfg.batch_size, train=False, seed=cfg.seed, augment=None)
        if not average:  # SWA keeps the average, not a chosen epoch: validation is only logged.
            callbacks += [
                keras.callbacks.ModelCheckpoint(str(best_path), monitor=MONITOR, mode="max", save_best_only=True),
                keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.patience),
            ]
    model.fit(
        Batches(
            train, spec, cfg.batch_size, train=True, seed=cfg.seed, augment=cfg.augmentation if cfg.augment else None
        ),
        validation_data=val_batches,
        epochs=cfg.epochs + cfg.swa_epochs,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    if average:
        average.apply(model)
        plain = Batches(train, spec, cfg.batch_size, train=False, seed=cfg.seed, augment=None)
        reestimate_batchnorm(model, (plain[i][0] for i in range(len(plain))))
    if average or val_batches is None:
        model.save(best_path)
    # Finished: keep the network alone (loaded uncompiled, saved again). The optimizer's state would triple the
    # file and serves no further use; an interrupted run resumes from BackupAndRestore's folder instead.
    model = keras.models.load_model(best_path, compile=False)
    model.save(best_path)
    return model, logged_history(out_dir / "log.csv")


def logged_history(log: Path) -> dict[str, list[float]]:
    """The fit's per-epoch metrics, every epoch of it, from CSVLogger's file.

    Keras' own history holds only the epochs of the process that finished the fit, so a fit resumed by
    BackupAndRestore would report its epoch count and its best epoch from the resumption on. The log is appended
    to across resumptions; a fit that restarted from its first epoch in the same folder begins at the last row
    numbered 0. Columns logged without values (NA: validation metrics of a fit without validation) are left out.
    """
    with log.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    starts = [i for i, row in enumerate(rows) if row["epoch"] == "0"]
    rows = rows[starts[-1] :] if starts else rows
    names = [name for name in (rows[0] if rows else {}) if name != "epoch"]
    return {
        name: [float(row[name]) for row in rows] for name in names if all(row[name] not in ("", "NA") for row in rows)
    }


def learning_rate_schedule(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up, cosine decay over `epochs`, then (SWA) the constant `swa_learning_rate`."""
    cosine = None
    if cfg.epochs:
        warmup = steps_per_epoch * min(cfg.warmup_epochs, cfg.epochs)
        cosine = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.learning_rate * 0.1,
            decay_steps=max(1, steps_per_epoch * cfg.epochs - warmup),
            alpha=cfg.min_lr_fraction * 0.1,
            warmup_target=cfg.learning_rate,
            warmup_steps=warmup,
        )
        if not cfg.swa_epochs:
            return cosine
    return ConstantTail(cosine, steps_per_epoch * cfg.epochs, cfg.swa_learning_rate)
