"""The fine-tuning DataModule: a class-balanced fraction of a data set's training labels (or a
published label subset), with the paper's linear-evaluation augmentation, and its own val and
test splits (:class:`~simclr.data.labelled.LabelledData`)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch.utils.data import DataLoader

from simclr.data.dataloaders import world_size
from simclr.data.datamodule import LabelledDataModule
from simclr.data.label_subsets import LABEL_SUBSETS
from simclr.data.labelled import LabelledData
from simclr.data.splits import choose_training_images
from simclr.errors import ConfigError
from simclr.rules import BATCH_SIZE


class FineTuneDataModule(LabelledDataModule):
    """The labelled splits of a registered data set for fine-tuning.

    ``data`` is the data config (``configs/data/*.yaml``); its pre-training keys are not
    read. Training uses ``label_fraction`` of the training split, the same number of images
    from every class (:func:`~simclr.data.balanced_subset`, fixed by ``label_seed``), with
    random resized crops and flips (the paper's linear-evaluation augmentation); validation
    (model selection) and test use the data set's own val and test splits with the evaluation
    transform, so neither is ever trained on. The training images' order and crops are drawn
    from ``seed`` as pre-training's are (:mod:`simclr.data.resumable`), so a resumed run reads
    what an uninterrupted one would have.

    ``label_subset`` (``imagenet_1pct``, ``imagenet_10pct``) trains on exactly the images of a
    published list instead (:mod:`simclr.data.label_subsets`); ``label_fraction`` must then
    be 1.

    ``select_on_val=False`` (the official evaluations: every training image, the last epoch
    reported) joins the validation split to the training images the labels are chosen from,
    and leaves no validation split.
    """

    def __init__(
        self,
        data: dict,
        label_fraction: float,
        label_seed: int = 0,
        crop_scale: Sequence[float] = (0.08, 1.0),
        flip_prob: float = 0.5,
        label_subset: str | None = None,
        select_on_val: bool = True,
        seed: int | None = None,
    ):
        super().__init__()
        if label_subset is not None:
            LABEL_SUBSETS.canonical(label_subset)
            if label_fraction != 1:
                raise ConfigError(
                    f"label_subset={label_subset} and label_fraction={label_fraction} both "
                    "choose the labelled images: set label_fraction=1.0 with a label_subset"
                )
        self.label_subset = label_subset
        self.batch_size = BATCH_SIZE.check(data["batch_size"])
        self.select_on_val = select_on_val
        self.label_fraction = label_fraction
        self.label_seed = label_seed
        self.crop_scale, self.flip_prob = tuple(crop_scale), flip_prob
        self._train_indices: Tensor | None = None
        self.labelled = LabelledData.from_data_config(data, seed=seed)
        self.labelled.require_labels()

    def choose_training_images(self) -> Tensor:
        """Indices into the training split of the images trained on (sorted), chosen once;
        choosing them may move validation images into the training split
        (:func:`~simclr.data.splits.choose_training_images`)."""
        if self._train_indices is None:
            self._train_indices = choose_training_images(
                self.labelled.load_splits(),
                self.label_fraction,
                self.label_seed,
                self.label_subset,
                self.select_on_val,
                where=f"data.root={self.labelled.root}",
            )
        return self._train_indices

    @property
    def train_indices(self) -> Tensor:
        return self.choose_training_images()

    def setup(self, stage: str | None = None) -> None:
        # Chosen before any loader is made: the choice can change the val split.
        self.choose_training_images()

    def train_dataloader(self) -> DataLoader:
        indices = self.train_indices  # before reading the split, which a label subset changes
        batch_size = min(max(1, self.batch_size // world_size(self.trainer)), len(indices))
        views = self.labelled.training_augmentation(self.crop_scale, self.flip_prob)
        train = self.labelled.load_splits().train
        return self.labelled.training_dataloader(
            train, views, batch_size, "train", self.trainer, indices.tolist()
        )

    def val_dataloader(self) -> DataLoader:
        return self.labelled_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.labelled_dataloader("test")
