"""Pictures for people: training curves, per-subject Dice bars, best/worst overlay grids.

matplotlib with the non-interactive Agg backend, so plots render on a headless machine.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_training_curve(history: dict[str, list[float]], out_png: Path, title: str) -> None:
    """Loss and Dice per epoch, training against validation, from a fit's history (training.fit.fit's: every
    epoch, resumed or not; the validation keys only when there was validation)."""
    if not history.get("loss"):
        return
    epochs = list(range(1, len(history["loss"]) + 1))
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    for key, axis in (("loss", ax_loss), ("kaggle_dice", ax_dice)):
        axis.plot(epochs, history[key], label="train")
        if f"val_{key}" in history:
            axis.plot(epochs, history[f"val_{key}"], label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_subject_dice(per_subject: dict[int, float], out_png: Path) -> None:
    """Mean Kaggle Dice per held-out subject, sorted, to show which subjects the model fails on."""
    items = sorted(per_subject.items(), key=lambda kv: kv[1])
    fig, axis = plt.subplots(figsize=(max(6, len(items) * 0.25), 4))
    axis.bar([str(k) for k, _ in items], [v for _, v in items], color="#3b7dd8")
    axis.axhline(float(np.mean([v for _, v in items])), color="k", linestyle="--", label="mean over subjects")
    axis.set_xlabel("subject")
    axis.set_ylabel("mean Kaggle Dice")
    axis.set_ylim(0, 1)
    axis.tick_params(axis="x", labelrotation=90, labelsize=7)
    axis.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_overlay_grid(
    panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], out_png: Path, columns: int = 4
) -> None:
    """Frames with truth (green outline) and prediction (red fill); each panel is (title, image, truth, pred)."""
    rows = max(1, int(np.ceil(len(panels) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 3.2, rows * 2.6))
    for axis in np.atleast_1d(axes).ravel():
        axis.axis("off")
    for axis, (title, image, truth, pred) in zip(np.atleast_1d(axes).ravel(), panels, strict=False):
        axis.imshow(image, cmap="gray", vmin=0, vmax=1)
        axis.imshow(np.ma.masked_where(pred == 0, pred), cmap="autumn", alpha=0.45)
        if truth.any():
            axis.contour(truth, levels=[0.5], colors="lime", linewidths=1)
        axis.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_reliability(expected: np.ndarray, dice: np.ndarray, bins: int, out_png: Path, title: str) -> None:
    """Reliability diagram of the quality estimate: mean actual Dice against mean expected Dice per equal-width
    bin (on the diagonal when calibrated), with each bin's share of frames."""
    which = np.minimum((expected * bins).astype(int), bins - 1)
    used = [b for b in range(bins) if (which == b).any()]
    mean_expected = [expected[which == b].mean() for b in used]
    mean_actual = [dice[which == b].mean() for b in used]
    share = [(which == b).mean() for b in used]
    fig, (ax, ax_share) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="calibrated")
    ax.plot(mean_expected, mean_actual, marker="o", label="frames")
    ax.set_ylabel("mean actual Dice")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(title)
    ax_share.bar([(b + 0.5) / bins for b in used], share, width=0.9 / bins)
    ax_share.set_xlabel("expected Dice")
    ax_share.set_ylabel("share of frames")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_risk_coverage(coverage: np.ndarray, mean_dice: np.ndarray, kept: float, out_png: Path, title: str) -> None:
    """Mean Dice of the frames marked reliable against the share kept, most trusted first; the shipped cut's
    share marked."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(coverage, mean_dice)
    ax.axvline(kept, color="grey", linestyle="--", label=f"shipped cut keeps {kept:.0%}")
    ax.set_xlabel("share of frames kept (reliable)")
    ax.set_ylabel("mean Dice of the frames kept")
    ax.set_xlim(0, 1)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
