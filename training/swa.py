"""Stochastic weight averaging (SWA; Izmailov et al., 2018): the tail of a fit that the kept model averages.

After the cosine schedule has annealed, a few more epochs run at a constant, moderate learning rate, and
the weights at the end of each of them are averaged. The average sits nearer the centre of the flat region
those epochs wander through than any single epoch's weights, which on held-out subjects segments better
(measured in docs/training.md). BatchNorm's running statistics belong to no single epoch's weights, so they
are estimated afresh for the averaged network with one pass over the training frames.

Keras ships exponential moving averages (`use_ema`) but no equal-weight SWA with the BatchNorm pass, hence
this small module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np


class ConstantTail(keras.optimizers.schedules.LearningRateSchedule):
    """`head` for the first `head_steps` optimisation steps, then the constant `tail_rate`."""

    def __init__(
        self, head: keras.optimizers.schedules.LearningRateSchedule | None, head_steps: int, tail_rate: float
    ) -> None:
        self.head, self.head_steps, self.tail_rate = head, head_steps, tail_rate

    def __call__(self, step):
        tail = keras.ops.convert_to_tensor(self.tail_rate, "float32")
        if self.head is None or self.head_steps <= 0:
            return tail
        return keras.ops.where(keras.ops.less(step, self.head_steps), self.head(step), tail)

    def get_config(self) -> dict:
        return {"head_steps": self.head_steps, "tail_rate": self.tail_rate}


class WeightAverage(keras.callbacks.Callback):
    """Sums the trainable weights at the end of every epoch from `start_epoch` (0-based) on.

    The running sum is written to `path` after each epoch, so a fit resumed by BackupAndRestore continues
    the same average: an epoch already summed (by its index) is not added twice.
    """

    def __init__(self, start_epoch: int, path: Path) -> None:
        super().__init__()
        self.start_epoch, self.path = start_epoch, Path(path)
        self.total: list[np.ndarray] | None = None
        self.count = 0
        self.last_epoch = -1

    def on_train_begin(self, logs=None) -> None:
        if self.path.exists():
            saved = np.load(self.path)
            self.count, self.last_epoch = int(saved["count"]), int(saved["last_epoch"])
            self.total = [saved[f"w{i}"] for i in range(len(saved.files) - 2)]

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if epoch < self.start_epoch or epoch <= self.last_epoch:
            return
        weights = [keras.ops.convert_to_numpy(v).astype(np.float64) for v in self.model.trainable_weights]
        self.total = weights if self.total is None else [t + w for t, w in zip(self.total, weights, strict=True)]
        self.count += 1
        self.last_epoch = epoch
        partial = self.path.with_name(self.path.stem + ".partial.npz")
        np.savez(
            partial, count=self.count, last_epoch=self.last_epoch, **{f"w{i}": t for i, t in enumerate(self.total)}
        )
        os.replace(partial, self.path)

    def apply(self, model: keras.Model) -> int:
        """Give `model` the averaged weights; returns how many epochs they average (0: nothing to apply)."""
        if not self.count:
            return 0
        for variable, total in zip(model.trainable_weights, self.total, strict=True):
            variable.assign((total / self.count).astype(variable.dtype))
        return self.count


def reestimate_batchnorm(model: keras.Model, batches: Iterable[np.ndarray]) -> int:
    """Replace every BatchNorm layer's running mean and variance by the average of its batch statistics
    over `batches` (network inputs, already normalised); the weights are not touched. Returns the batches seen.

    Each batch runs through the network in training mode with the layer's momentum set to n/(n+1), which
    turns Keras' exponential update into an equal-weight running mean."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(keras.ops.zeros(layer.moving_mean.shape, layer.moving_mean.dtype))
        layer.moving_variance.assign(keras.ops.ones(layer.moving_variance.shape, layer.moving_variance.dtype))
    seen = 0
    try:
        for x in batches:
            for layer in layers:
                layer.momentum = seen / (seen + 1)
            model(x, training=True)
            seen += 1
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return seen
