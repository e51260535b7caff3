"""Load a Kaggle-layout dataset ("<subject>_<n>.tif" + "<subject>_<n>_mask.tif") from any folder.

Pairs are matched by name. A missing partner or an unreadable file is an error that names the file:
silently dropping frames would change what a model was trained and evaluated on without anyone knowing.
Images are decoded by model.decode, the same code the service runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.decode.images import read_image
from model.errors import ImageError
from model.preprocessing import resize_to

_IMAGE = re.compile(r"^(?P<subject>\d+)_(?P<frame>\d+)\.(?P<ext>tiff?|png)$", re.IGNORECASE)
_MASK = re.compile(r"^(?P<subject>\d+)_(?P<frame>\d+)_mask\.(?P<ext>tiff?|png|gif)$", re.IGNORECASE)


class DatasetError(ValueError):
    """The dataset folder is not usable; the message names the file(s) and the problem."""


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    subject: int
    frame: int

    @property
    def name(self) -> str:
        return f"{self.subject}_{self.frame}"


@dataclass
class Dataset:
    """All frames in memory: model-resolution inputs in [0, 1] plus full-size masks for scoring."""

    pairs: list[Pair]
    images: np.ndarray  # (N, h, w) float32 in [0, 1], resized to the model input
    masks: np.ndarray  # (N, h, w) float32 0/1 at model resolution (training targets)
    full_masks: list[np.ndarray] = field(repr=False)  # each uint8 0/1 at the frame's own size
    subjects: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.subjects = np.array([p.subject for p in self.pairs])

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(
            [self.pairs[i] for i in index], self.images[index], self.masks[index], [self.full_masks[i] for i in index]
        )


def train_folder(root: Path) -> Path:
    """Accept either the Kaggle root (with train/) or the train folder itself."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    return root / "train" if (root / "train").is_dir() else root


def find_pairs(root: Path) -> list[Pair]:
    """Match every image with its mask; any file without its partner is reported by name."""
    folder = train_folder(root)
    images: dict[tuple[int, int], Path] = {}
    masks: dict[tuple[int, int], Path] = {}
    for path in sorted(folder.iterdir()):
        if m := _MASK.match(path.name):
            masks[(int(m["subject"]), int(m["frame"]))] = path
        elif m := _IMAGE.match(path.name):
            images[(int(m["subject"]), int(m["frame"]))] = path
    problems = [f"{images[k]}: image has no mask file" for k in sorted(images.keys() - masks.keys())]
    problems += [f"{masks[k]}: mask has no image file" for k in sorted(masks.keys() - images.keys())]
    if problems:
        raise DatasetError("unmatched files:\n  " + "\n  ".join(problems))
    if not images:
        raise DatasetError(f"{folder}: no '<subject>_<n>.tif' / '<subject>_<n>_mask.tif' pairs found")
    return [Pair(images[k], masks[k], k[0], k[1]) for k in sorted(images)]


def load_dataset(root: Path, height: int, width: int, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Decode every pair; collects all unreadable files and raises once with their names."""
    pairs = find_pairs(root)
    images = np.empty((len(pairs), height, width), np.float32)
    masks = np.empty((len(pairs), height, width), np.float32)
    full_masks: list[np.ndarray] = []
    problems: list[str] = []
    for i, pair in enumerate(pairs):
        try:
            image = read_image(pair.image)
            mask = read_image(pair.mask) > 0.5
        except ImageError as exc:
            problems.append(exc.message)
            full_masks.append(np.zeros((1, 1), np.uint8))
            continue
        if image.shape != mask.shape:
            problems.append(
                f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        images[i] = resize_to(image, height, width)
        masks[i] = resize_to(mask.astype(np.float32), height, width) >= 0.5
        full_masks.append(mask.astype(np.uint8))
        if progress:
            progress(i + 1, len(pairs))
    if problems:
        raise DatasetError(f"{len(problems)} unusable file(s):\n  " + "\n  ".join(problems))
    return Dataset(pairs, images, masks, full_masks)
