"""Kaggle-layout loader on generated files, clear errors for bad ones, and the subject-wise split."""

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import phantom
from training.data import DatasetError, find_pairs, load_dataset
from training.split import fold_indices, inner_validation_subjects, subject_folds


def write_pair(folder, subject, frame, image: np.ndarray, mode: str = "L", empty: bool = False):
    h, w = image.shape[:2]
    if image.dtype == np.uint16:
        tifffile.imwrite(folder / f"{subject}_{frame}.tif", image)
    else:
        Image.fromarray(image).convert(mode).save(folder / f"{subject}_{frame}.tif")
    mask = np.zeros((h, w), np.uint8)
    if not empty:
        mask[h // 3 : h // 2, w // 3 : w // 2] = 255
    Image.fromarray(mask).save(folder / f"{subject}_{frame}_mask.tif")


@pytest.fixture
def kaggle_dir(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    write_pair(train, 1, 1, phantom(420, 580, seed=1), empty=True)
    write_pair(train, 1, 2, phantom(420, 580, seed=2))
    write_pair(train, 4, 1, phantom(186, 256, seed=3))
    write_pair(train, 4, 2, phantom(186, 256, seed=4), mode="RGB")
    write_pair(train, 5, 10, phantom(93, 128, seed=5).astype(np.uint16) * 257)
    return tmp_path


def test_loader_reads_sizes_modes_and_bit_depths(kaggle_dir):
    data = load_dataset(kaggle_dir, 16, 24)
    assert len(data) == 5
    assert data.images.shape == (5, 16, 24) and data.masks.shape == (5, 16, 24)
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert [m.shape for m in data.full_masks] == [(420, 580)] * 2 + [(186, 256)] * 2 + [(93, 128)]
    assert not data.full_masks[0].any() and data.full_masks[1].any()
    assert sorted(set(data.subjects.tolist())) == [1, 4, 5]
    # the 16-bit frame is read on its own scale, like an 8-bit one
    assert 0.05 < data.images[4].mean() < 0.6


def test_loader_accepts_the_train_folder_itself(kaggle_dir):
    assert len(find_pairs(kaggle_dir / "train")) == 5


def test_missing_mask_is_named(kaggle_dir):
    (kaggle_dir / "train" / "4_2_mask.tif").unlink()
    with pytest.raises(DatasetError, match="4_2.tif: image has no mask"):
        find_pairs(kaggle_dir)


def test_orphan_mask_is_named(kaggle_dir):
    (kaggle_dir / "train" / "4_2.tif").unlink()
    with pytest.raises(DatasetError, match="4_2_mask.tif: mask has no image"):
        find_pairs(kaggle_dir)


def test_unreadable_files_are_all_named(kaggle_dir):
    (kaggle_dir / "train" / "4_1.tif").write_bytes(b"garbage")
    data = io.BytesIO()
    Image.fromarray(phantom(186, 256)).save(data, format="TIFF")
    (kaggle_dir / "train" / "5_10.tif").write_bytes(data.getvalue()[:300])
    with pytest.raises(DatasetError) as info:
        load_dataset(kaggle_dir, 16, 24)
    assert "4_1.tif" in str(info.value) and "5_10.tif" in str(info.value)


def test_mask_of_another_size_is_named(kaggle_dir):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(kaggle_dir / "train" / "4_1_mask.tif")
    with pytest.raises(DatasetError, match="4_1_mask.tif"):
        load_dataset(kaggle_dir, 16, 24)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="no '<subject>_<n>.tif'"):
        find_pairs(tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        find_pairs(tmp_path / "nope")


def test_folds_never_share_a_subject_and_cover_all():
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(1, 42), rng.integers(20, 80, size=41))
    for k in (2, 3, 5, 10):
        folds = subject_folds(subjects, k, seed=7)
        flat = [s for f in folds for s in f]
        assert sorted(flat) == list(range(1, 42)) and len(flat) == len(set(flat))
        sizes = [len(fold_indices(subjects, f)) for f in folds]
        assert max(sizes) - min(sizes) <= 80  # balanced by frames, within one subject's size
    assert subject_folds(subjects, 5, seed=7) == subject_folds(subjects, 5, seed=7)


def test_too_many_folds_is_an_error():
    with pytest.raises(ValueError):
        subject_folds(np.array([1, 1, 2]), 3)


def test_inner_validation_is_drawn_from_training_subjects():
    train = [4, 5, 6, 7, 9, 11, 12, 13]
    val = inner_validation_subjects(train, 0.25, seed=1)
    assert len(val) == 2 and set(val) <= set(train)
