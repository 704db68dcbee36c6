from types import SimpleNamespace

import pytest
import torch

from simclr.data import DATASETS, SimCLRDataModule, balanced_subset
from simclr.data.dataloaders import per_device_batch_size
from simclr.data.sources import Source, load_digits

AUGMENT = {"color_strength": 0.5, "blur_prob": 0.0}


def datamodule(name="fake", batch_size=8, num_views=2, **options) -> SimCLRDataModule:
    return SimCLRDataModule(
        name=name,
        root="unused",
        image_size=32,
        batch_size=batch_size,
        num_views=num_views,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        augment=AUGMENT,
        options=options,
    )


def test_digits_split_is_stratified_disjoint_and_deterministic():
    splits = load_digits(Source("unused", image_size=32))
    again = load_digits(Source("unused", image_size=32))
    sizes = [len(s) for s in (splits.train, splits.val, splits.test)]
    assert sum(sizes) == 1797 and sizes[0] > 1200
    assert torch.equal(splits.val.labels, again.val.labels)
    assert torch.equal(splits.test.images, again.test.images)
    # Each class keeps its share in every split.
    for split in (splits.val, splits.test):
        counts = torch.bincount(split.labels, minlength=10)
        assert counts.min() >= 20 and counts.max() <= 35
    image, label = splits.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert 0 <= label < 10 and image.max() > 200  # strokes reach full intensity


def test_digits_images_are_not_shared_between_splits():
    splits = load_digits(Source("unused", image_size=8))
    train = {bytes(x.numpy()) for x in splits.train.images}
    overlap = sum(bytes(x.numpy()) in train for x in splits.test.images)
    # Duplicated digits exist in the raw data, but a split by index must not copy a split.
    assert overlap < len(splits.test) // 10


@pytest.mark.parametrize("num_views", [2, 3])
def test_pretraining_batches_hold_views(num_views):
    dm = datamodule(batch_size=8, num_views=num_views)
    views, labels = next(iter(dm.train_dataloader()))
    assert len(views) == num_views
    assert all(v.shape == (8, 3, 32, 32) and v.dtype == torch.float32 for v in views)
    assert labels.shape == (8,)


def test_labelled_loader_is_deterministic():
    dm = datamodule()
    first, _ = next(iter(dm.labelled_dataloader("val")))
    second, _ = next(iter(dm.labelled_dataloader("val")))
    assert torch.equal(first, second) and first.shape[1:] == (3, 32, 32)


def test_global_batch_is_split_over_devices():
    assert per_device_batch_size(16, SimpleNamespace(world_size=4)) == 4
    dm = datamodule(batch_size=16)
    dm.trainer = SimpleNamespace(world_size=3)
    with pytest.raises(ValueError, match="does not divide by the 3 devices"):
        dm.train_dataloader()


def test_batch_larger_than_the_data_set_is_a_clear_error():
    with pytest.raises(ValueError, match="more than the 64 training images"):
        datamodule(batch_size=128).train_dataloader()


def test_unknown_data_set_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        datamodule(name="imagenet21k")
    assert all(name in str(error.value) for name in DATASETS)


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_balanced_subset_takes_the_fraction_of_every_class(fraction):
    labels = torch.tensor([0] * 200 + [1] * 50 + [2] * 7)
    indices = balanced_subset(labels, fraction, seed=3)
    counts = torch.bincount(labels[indices], minlength=3)
    expected = [max(1, round(fraction * n)) for n in (200, 50, 7)]
    assert counts.tolist() == expected
    assert len(indices.unique()) == len(indices)
    assert torch.equal(indices, balanced_subset(labels, fraction, seed=3))
    if fraction < 1:
        assert not torch.equal(indices, balanced_subset(labels, fraction, seed=4))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_balanced_subset_rejects_fractions_outside_the_unit_interval(fraction):
    with pytest.raises(ValueError, match=rf"label_fraction={fraction}: must be in \(0, 1\]"):
        balanced_subset(torch.tensor([0, 1]), fraction)


@pytest.mark.parametrize(
    "image_size, fraction, expected_resize",
    [(96, None, 110), (224, None, 256), (32, None, 32), (96, 1.0, 96), (96, 0.5, 192)],
)
def test_evaluation_crop_follows_the_official_rule(image_size, fraction, expected_resize):
    dm = SimCLRDataModule(
        name="fake",
        root=".",
        image_size=image_size,
        batch_size=8,
        num_views=2,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        augment={},
        eval_crop_fraction=fraction,
    )
    steps = dm.labelled.eval_transform().transforms
    resize = next(t for t in steps if type(t).__name__ == "Resize")
    assert resize.size == [expected_resize]
