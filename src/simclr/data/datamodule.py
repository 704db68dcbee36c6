"""What the DataModules of both jobs share: a :class:`~simclr.data.labelled.LabelledData`, its
labelled loaders, the resume state that their checkpoints keep, and the report of the image
files skipped as undecodable."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from simclr.data.containers import LabelledSplits
from simclr.data.labelled import LabelledData


class LabelledDataModule(L.LightningDataModule):
    """A DataModule over :attr:`labelled`, which its subclass builds; each loader follows the
    trainer that Lightning attached to this module."""

    labelled: LabelledData

    @property
    def num_classes(self) -> int:
        return self.labelled.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.labelled.class_names

    def load_splits(self) -> LabelledSplits:
        return self.labelled.load_splits()

    def setup(self, stage: str | None = None) -> None:
        self.labelled.load_splits()

    def labelled_dataloader(self, split: str) -> DataLoader:
        """A labelled split (``train``, ``val`` or ``test``) with the evaluation transform."""
        return self.labelled.labelled_dataloader(split, self.trainer)

    def skipped_images(self) -> list[str]:
        return self.labelled.skipped_images()

    def state_dict(self) -> dict:
        return self.labelled.stream.state_dict(self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self.labelled.stream.load_state_dict(state_dict)

    def teardown(self, stage: str | None = None) -> None:
        self.labelled.report_skipped_images()
