"""Augmentation moves image and mask together and is reproducible; the dataset cache round-trips."""

import numpy as np
import pytest
from PIL import Image

from model.preprocessing import InputSpec
from tests.conftest import phantom
from training.augment import augment_batch
from training.cache import load_cache, save_cache
from training.data import DatasetError, load_dataset
from training.fit import Batches
from training.recipe import load_recipe

RANGES = load_recipe().train.augmentation


def blob_batch(n: int = 8, h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Dark images with one bright ellipse, whose mask is exactly the ellipse."""
    y, x = np.mgrid[0:h, 0:w]
    masks = np.zeros((n, h, w), np.float32)
    for i in range(n):
        cy, cx = 14 + 2 * i, 20 + 3 * i
        masks[i] = ((x - cx) / 9.0) ** 2 + ((y - cy) / 6.0) ** 2 < 1
    return 0.1 + 0.8 * masks, masks


def test_augmentation_moves_mask_with_image_and_stays_in_range():
    images, masks = blob_batch()
    out_i, out_m = augment_batch(images, masks, np.random.default_rng(3), RANGES)
    assert out_i.dtype == np.float32 and out_i.min() >= 0 and out_i.max() <= 1
    assert set(np.unique(out_m)) <= {0.0, 1.0}
    assert not np.array_equal(out_m, masks)  # geometry really changed something
    for img, msk in zip(out_i, out_m, strict=True):
        assert msk.sum() > 0.5 * 9 * 6 * np.pi  # zoom <= 10%: the blob survives
        assert img[msk > 0].mean() > img[msk == 0].mean() + 0.3  # still the bright region


def test_augmentation_is_reproducible_from_its_generator():
    images, masks = blob_batch()
    a = augment_batch(images, masks, np.random.default_rng([1, 2, 3]), RANGES)
    b = augment_batch(images, masks, np.random.default_rng([1, 2, 3]), RANGES)
    c = augment_batch(images, masks, np.random.default_rng([1, 2, 4]), RANGES)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_batches_shuffle_per_epoch_and_validation_is_plain(tmp_path):
    from training.data import Dataset, Pair

    images, masks = blob_batch(10)
    pairs = [Pair(tmp_path / f"{i}.tif", tmp_path / f"{i}_mask.tif", 1, i) for i in range(10)]
    data = Dataset(pairs, images, masks, [m.astype(np.uint8) for m in masks])
    spec = InputSpec(48, 64, 0.3, 0.2)
    train = Batches(data, spec, 4, train=True, seed=5, augment=RANGES)
    again = Batches(data, spec, 4, train=True, seed=5, augment=RANGES)
    assert len(train) == 3
    x, y = train[0]
    assert x.shape == (4, 48, 64, 1) and y.shape == (4, 48, 64, 1)
    np.testing.assert_array_equal(x, again[0][0])
    first = train.order.copy()
    train.on_epoch_end()
    assert not np.array_equal(first, train.order)
    val = Batches(data, spec, 4, train=False, seed=5, augment=None)
    vx, vy = val[2]
    np.testing.assert_allclose(vx[..., 0], (images[8:] - 0.3) / 0.2, rtol=1e-6)
    np.testing.assert_array_equal(vy[..., 0], masks[8:])


@pytest.fixture()
def small_folder(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for subject, (h, w) in ((1, (70, 90)), (2, (93, 128))):
        for frame in (1, 2):
            Image.fromarray(phantom(h, w, seed=subject + frame)).save(folder / f"{subject}_{frame}.tif")
            mask = np.zeros((h, w), np.uint8)
            mask[10 : 20 + frame, 30:50] = 255 if subject == 2 else 0
            Image.fromarray(mask).save(folder / f"{subject}_{frame}_mask.tif")
    return tmp_path


def test_cache_round_trip(small_folder, tmp_path):
    data = load_dataset(small_folder, 24, 32)
    path = tmp_path / "c.npz"
    save_cache(data, path)
    back = load_cache(path, 24, 32)
    np.testing.assert_allclose(back.images, data.images, atol=2.5e-4)
    np.testing.assert_array_equal(back.masks, data.masks)
    for a, b in zip(back.full_masks, data.full_masks, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [(p.subject, p.frame, p.image.name) for p in back.pairs] == [
        (p.subject, p.frame, p.image.name) for p in data.pairs
    ]


def test_cache_errors_name_the_file(small_folder, tmp_path):
    path = tmp_path / "c.npz"
    save_cache(load_dataset(small_folder, 24, 32), path)
    with pytest.raises(DatasetError, match=r"c\.npz: cached at 24x32"):
        load_cache(path, 96, 128)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"junk\.npz: not a dataset cache"):
        load_cache(junk, 24, 32)
