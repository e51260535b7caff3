"""The quality estimate: how far one answer's outline can be trusted.

The network's peak probability is close to 1 on almost every frame, with or without a nerve in view, so it
cannot say when an outline is wrong. What does tell is how well the returned mask agrees with the map it was
cut from and with the mirror pass of the flip test-time augmentation: a confident, compact outline that both
passes draw alike is usually right; a faint, ragged one, or one the mirror pass draws elsewhere, usually is
not. A few such signals are mapped to an *expected Dice* by two logistic models fitted by training on
out-of-fold predictions (training/quality.py) and stored in metadata.json:

- a mask was returned: the expected Dice between it and an expert's outline;
- the mask is empty: the probability that no nerve is in view (Dice is 1 when both masks are empty, else 0).

An answer is `reliable` when its expected Dice reaches the cut stored with the models. The signals are
computed from the exact map and mask an answer returns, so a user's own threshold or loop smoothing is
accounted for (the models were fitted at the calibrated threshold: docs/api.md says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.postprocessing import Prediction

#: Signals of an outlined answer, in the order the stored coefficients expect.
OUTLINED_SIGNALS = ("soft_dice", "flip_dice", "log_area_fraction", "mean_inside")
#: Signals of an empty answer: how much the network leaned towards a nerve it did not outline.
EMPTY_SIGNALS = ("peak", "flip_dice")
#: Every signal `signals` computes: the names a stored model may use.
SIGNALS = ("soft_dice", "flip_dice", "log_area_fraction", "mean_inside", "peak")
#: Keeps the log of a mask's share of the frame finite: well below one model-input pixel.
AREA_FLOOR = 1e-5


def soft_dice(probability: np.ndarray, mask: np.ndarray) -> float:
    """Soft Dice between a probability map and a binary mask of the same size: the Dice an expert's outline
    would get if the map were the truth's distribution (0 for an empty mask beside a non-empty map)."""
    p = probability.astype(np.float32, copy=False)
    inside = float(p[mask > 0].sum())
    total = float(p.sum()) + float(np.count_nonzero(mask))
    return 2.0 * inside / total if total > 0 else 1.0


def flip_dice(plain: np.ndarray, mirror: np.ndarray, threshold: float) -> float:
    """Dice between the frame's and its (un-mirrored) mirror's thresholded maps at model resolution: where the
    two passes disagree about the outline, the average of them is a guess."""
    a, b = plain >= threshold, mirror >= threshold
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else 1.0


def signals(prediction: Prediction, plain: np.ndarray, mirror: np.ndarray) -> dict[str, float]:
    """Every signal of one answer: its returned full-size mask and map, and the two TTA passes' model-resolution
    maps (equal when the model runs without flip TTA)."""
    mask, probability = prediction.mask, prediction.probability
    area = int(np.count_nonzero(mask))
    return {
        "soft_dice": soft_dice(probability, mask),
        "flip_dice": flip_dice(plain, mirror, prediction.threshold),
        "log_area_fraction": float(np.log(max(area / mask.size, AREA_FLOOR))),
        "mean_inside": float(probability[mask > 0].mean()) if area else 0.0,
        "peak": prediction.nerve_probability,
    }


@dataclass(frozen=True)
class Logistic:
    """sigmoid(intercept + coef . (x - mean) / scale): one fitted logistic model over named signals."""

    signals: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def __post_init__(self) -> None:
        if not len(self.signals) == len(self.mean) == len(self.scale) == len(self.coef):
            raise ValueError("signals, mean, scale and coef differ in length")

    def __call__(self, values: dict[str, float]) -> float:
        x = (np.array([values[s] for s in self.signals]) - np.array(self.mean)) / np.array(self.scale)
        return float(1.0 / (1.0 + np.exp(-(self.intercept + float(np.dot(self.coef, x))))))

    def to_dict(self) -> dict:
        return {
            "signals": list(self.signals),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Logistic:
        """A stored model; one naming a signal `signals` does not compute is refused here, when the model is
        loaded, not met as a KeyError on a user's request."""
        unknown = [s for s in d["signals"] if s not in SIGNALS]
        if unknown:
            raise ValueError(f"unknown signals {unknown} (known: {', '.join(SIGNALS)})")
        return cls(
            tuple(d["signals"]),
            tuple(map(float, d["mean"])),
            tuple(map(float, d["scale"])),
            tuple(map(float, d["coef"])),
            float(d["intercept"]),
        )


@dataclass(frozen=True)
class QualityEstimator:
    """Expected Dice of an answer and the cut above which it is reliable."""

    outlined: Logistic
    empty: Logistic
    cut: float

    def expected_dice(self, values: dict[str, float], outlined: bool) -> float:
        return (self.outlined if outlined else self.empty)(values)

    def assess(self, prediction: Prediction, plain: np.ndarray, mirror: np.ndarray) -> Assessment:
        expected = self.expected_dice(signals(prediction, plain, mirror), prediction.nerve_present)
        return Assessment(expected_dice=expected, reliable=expected >= self.cut)

    def to_metadata(self, extra: dict | None = None) -> dict:
        return {
            "outlined": self.outlined.to_dict(),
            "empty": self.empty.to_dict(),
            "cut": self.cut,
            **(extra or {}),
        }

    @classmethod
    def from_metadata(cls, metadata: dict) -> QualityEstimator | None:
        """The estimator stored in metadata.json, or None for a model folder that has none (older models)."""
        section = metadata.get("quality")
        if section is None:
            return None
        models = {}
        for part in ("outlined", "empty"):
            try:
                models[part] = Logistic.from_dict(section[part])
            except ValueError as exc:
                raise ValueError(f"metadata field 'quality.{part}' is invalid: {exc}") from None
        return cls(models["outlined"], models["empty"], float(section["cut"]))


@dataclass(frozen=True)
class Assessment:
    expected_dice: float
    reliable: bool


def csv_fields(assessment: Assessment | None) -> dict[str, object]:
    """The two fields as the CLIs' CSVs write them (model.predict, training.evaluate): empty cells for a model
    without a quality estimator (older model folders), so the columns are the same for every model."""
    if assessment is None:
        return {"expected_dice": "", "reliable": ""}
    return {"expected_dice": round(assessment.expected_dice, 6), "reliable": assessment.reliable}
