"""Every data-set loader refuses an option it does not take, naming it, before reading."""

import pytest

from simclr.data import DATASETS, SimCLRDataModule, load_dataset
from simclr.data.sources import loader_options
from simclr.errors import ConfigError


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_loader_rejects_an_unknown_option_naming_it(name, tmp_path):
    # The root is empty: the option is refused before any file is looked for.
    with pytest.raises(ConfigError, match=r"data\.options\.val_fraktion: .*'val_fraktion'"):
        load_dataset(name, str(tmp_path), 32, options={"val_fraktion": 0.1})


@pytest.mark.parametrize("name", ["digits", "fake"])
def test_digits_and_fake_no_longer_ignore_unknown_options(name, tmp_path):
    dm = SimCLRDataModule(
        name, str(tmp_path), 16, 8, 2, [0.5] * 3, [0.25] * 3, augment={}, options={"seed": 1}
    )
    with pytest.raises(ConfigError) as error:
        dm.setup("fit")
    assert "data.options.seed" in str(error.value)
    # The message lists the options the loader does take.
    assert all(option in str(error.value) for option in loader_options(name))


def test_known_options_still_reach_the_loader(tmp_path):
    splits = load_dataset("fake", str(tmp_path), 8, options={"num_train": 5, "num_classes": 3})
    assert len(splits.train) == 5 and splits.num_classes == 3


def test_the_split_seed_reaches_every_loader_that_draws_splits(tmp_path):
    first = load_dataset("digits", str(tmp_path), 8, options={"split_seed": 1})
    again = load_dataset("digits", str(tmp_path), 8, options={"split_seed": 1})
    other = load_dataset("digits", str(tmp_path), 8, options={"split_seed": 2})
    assert first.test.labels.tolist() == again.test.labels.tolist()
    assert not (first.test.images == other.test.images).all()
    assert "split_seed" in loader_options("imagefolder")


def test_streaming_shards_refuse_a_split_seed_their_splits_were_drawn_before(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.options\.split_seed=3: .*--split-seed"):
        load_dataset("streaming", str(tmp_path), 32, options={"split_seed": 3})
