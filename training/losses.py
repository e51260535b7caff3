"""Losses and the validation metric.

BCE gives every pixel a gradient; the per-image soft Dice term keeps the small nerve from being drowned by
background. Per-image (not batch) Dice matches how the competition scores, and an empty frame predicted
empty scores 1 in both the loss (through the smoothing term) and the metric. The Lovász loss is for
fine-tuning a model trained with BCE + Dice (`training.train --init-run`): it is a tight convex surrogate
of each image's IoU (Berman et al., CVPR 2018), and per-image Dice rises and falls with per-image IoU.
"""

from __future__ import annotations

import keras
from keras import ops

SMOOTH = 1.0


def soft_dice_per_image(y_true, y_pred):
    axes = (1, 2, 3)
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return (2.0 * intersection + SMOOTH) / (total + SMOOTH)


@keras.saving.register_keras_serializable(package="nerve")
def bce_dice_loss(y_true, y_pred):
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    return bce + 1.0 - soft_dice_per_image(y_true, y_pred)


@keras.saving.register_keras_serializable(package="nerve")
def kaggle_dice(y_true, y_pred):
    """Hard per-image Dice at 0.5 (1 when both empty): the metric EarlyStopping watches."""
    pred = ops.cast(y_pred >= 0.5, "float32")
    axes = (1, 2, 3)
    intersection = ops.sum(y_true * pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(pred, axis=axes)
    return ops.where(total > 0, 2.0 * intersection / ops.maximum(total, 1.0), 1.0)


@keras.saving.register_keras_serializable(package="nerve")
def lovasz_loss(y_true, y_pred):
    """Per-image Lovász extension of 1 - IoU on probabilities (the binary Lovász-Softmax).

    Pixel errors |truth - p| are sorted, largest first, and weighted by how much each one, in that order,
    raises the image's Jaccard loss; the weights depend only on the order and the truth, so the gradient
    flows through the errors alone.
    """
    batch = ops.shape(y_true)[0]
    truth = ops.reshape(y_true, (batch, -1))
    errors = ops.abs(truth - ops.reshape(y_pred, (batch, -1)))
    errors_sorted, order = ops.top_k(errors, k=ops.shape(errors)[1], sorted=True)
    truth_sorted = ops.take_along_axis(truth, order, axis=1)
    total = ops.sum(truth_sorted, axis=1, keepdims=True)
    intersection = total - ops.cumsum(truth_sorted, axis=1)
    union = total + ops.cumsum(1.0 - truth_sorted, axis=1)
    jaccard = 1.0 - intersection / union
    weights = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)
    return ops.sum(errors_sorted * ops.stop_gradient(weights), axis=1)


#: --loss choices: the function and how metadata.json names it.
LOSSES = {
    "bce_dice": (bce_dice_loss, "BCE + per-image soft Dice"),
    "lovasz": (lovasz_loss, "per-image Lovász (IoU surrogate)"),
}
