"""The one DataLoader factory (:func:`simclr.data.make_dataloader`) behind pre-training's, the
monitors' and fine-tuning's DataLoaders, and the one Trainer builder behind both runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset

from conftest import compose_config
from simclr.callbacks.safeguards import AtomicCheckpointIO
from simclr.data import DataLoaderSettings, FineTuneDataModule, SimCLRDataModule, make_dataloader
from simclr.tasks import finetune
from simclr.tasks.common import build_trainer

# A data config as the DataModules receive it (configs/data/fake.yaml, smaller).
DATA = {
    "name": "fake",
    "root": "unused",
    "image_size": 16,
    "batch_size": 8,
    "eval_batch_size": 16,
    "mean": [0.5] * 3,
    "std": [0.25] * 3,
    "augment": {},
    "options": {"num_train": 40, "num_val": 16, "num_test": 16},
}
SPLITS = ("train", "val", "test")


def trainer_of(devices: int, cuda: bool = False) -> SimpleNamespace:
    """What the loaders read of a Trainer: its devices, world size and accelerator."""
    accelerator = CUDAAccelerator() if cuda else CPUAccelerator()
    return SimpleNamespace(num_devices=devices, world_size=devices, accelerator=accelerator)


def finetuning_loaders(datamodule: FineTuneDataModule, trainer) -> dict[str, DataLoader]:
    """The three loaders, with ``trainer`` attached and ``setup`` called, as Lightning does."""
    datamodule.trainer = trainer
    datamodule.setup("fit")
    return {
        "train": datamodule.train_dataloader(),
        "val": datamodule.val_dataloader(),
        "test": datamodule.test_dataloader(),
    }


def test_finetuning_loaders_choose_the_worker_count_when_it_is_null(monkeypatch):
    # data.num_workers=null (configs/data/loader/default.yaml) once crashed fine-tuning's
    # training loader, which passed None on to the DataLoader.
    monkeypatch.setattr("simclr.data.dataloaders.available_cpus", lambda: 8)
    datamodule = FineTuneDataModule({**DATA, "num_workers": None}, label_fraction=1.0)
    # 8 cores, less the device's own process; over 2 devices, 4 cores each, less one.
    for trainer, workers in ((None, 7), (trainer_of(2), 3)):
        loaders = finetuning_loaders(datamodule, trainer)
        assert {split: loader.num_workers for split, loader in loaders.items()} == dict.fromkeys(
            SPLITS, workers
        )


@pytest.mark.parametrize(
    "settings",
    [
        {"num_workers": 2, "pin_memory": True, "prefetch_factor": 3, "persistent_workers": False},
        # pin_memory=null pins on the trainer's CUDA accelerator, whatever this machine has.
        {"num_workers": 1, "pin_memory": None, "prefetch_factor": 4, "persistent_workers": True},
        {"num_workers": 0, "pin_memory": False, "prefetch_factor": 2, "persistent_workers": True},
    ],
    ids=["pinned", "pinned-for-cuda", "no-workers"],
)
def test_both_datamodules_make_their_loaders_alike(settings):
    trainer = trainer_of(1, cuda=True)
    pretraining = SimCLRDataModule(num_views=2, **DATA, **settings)
    pretraining.trainer = trainer
    finetuning = FineTuneDataModule({**DATA, **settings}, label_fraction=1.0)
    loaders = {
        "pretraining": pretraining.train_dataloader(),
        "monitors": pretraining.labelled_dataloader("val"),
        **{f"fine-tuning {k}": v for k, v in finetuning_loaders(finetuning, trainer).items()},
    }
    workers = settings["num_workers"]
    expected = (
        workers,
        settings["pin_memory"] is not False,
        settings["prefetch_factor"] if workers else None,
        settings["persistent_workers"] and workers > 0,
    )
    for name, loader in loaders.items():
        got = (loader.num_workers, loader.pin_memory, loader.prefetch_factor)
        assert (*got, loader.persistent_workers) == expected, name
    # On a CPU trainer nothing is pinned, in pre-training and in fine-tuning alike.
    if settings["pin_memory"] is None:
        cpu = trainer_of(1)
        assert not any(loader.pin_memory for loader in finetuning_loaders(finetuning, cpu).values())


@pytest.mark.parametrize(
    "role,drop_last,images,devices,dropped",
    [
        ("pretrain", True, 10, 1, True),  # data.drop_last: the last 2 images wait
        ("pretrain", False, 10, 1, False),
        ("pretrain", False, 9, 1, True),  # a last batch of one image is dropped anyway
        ("train", True, 10, 1, False),  # data.drop_last is pre-training's alone
        ("train", True, 9, 1, True),
        ("train", True, 13, 1, True),
        ("train", True, 13, 2, False),  # 7 images a device: batches of 4 and 3
        ("train", True, 10, 2, True),  # 5 images a device: 4 and 1
        ("eval", True, 9, 1, False),  # every image is evaluated
    ],
)
def test_which_loaders_drop_their_last_batch(role, drop_last, images, devices, dropped):
    dataset = TensorDataset(torch.zeros(images, 2), torch.arange(images))
    settings = DataLoaderSettings(num_workers=0, drop_last=drop_last)
    loader = make_dataloader(dataset, 4, role, settings, trainer_of(devices))
    assert loader.drop_last == dropped
    assert isinstance(loader.sampler, SequentialSampler if role == "eval" else RandomSampler)
    if devices == 1:
        sizes = [len(labels) for _, labels in loader]
        assert sum(sizes) == images - (images % 4 if dropped else 0)
        if role != "eval":
            assert 1 not in sizes  # BatchNorm cannot train on one image


def test_an_unknown_loader_role_is_refused():
    with pytest.raises(ValueError, match="unknown loader role 'test'; valid: pretrain, train"):
        make_dataloader(TensorDataset(torch.zeros(4)), 2, "test", DataLoaderSettings())


class Classifier(L.LightningModule):
    """The least a Trainer can fit: a linear layer on flattened images."""

    def __init__(self):
        super().__init__()
        self.layer = nn.LazyLinear(10)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return F.cross_entropy(self.layer(images.flatten(1)), labels)

    def validation_step(self, batch, batch_idx):
        pass

    def test_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_seeds_the_workers_of_every_finetuning_loader(monkeypatch):
    # seed_everything(workers=True) makes Lightning give each loader that a DataModule hands
    # it a worker_init_fn seeding numpy and random in the workers; a loader with its own
    # worker_init_fn (or one Lightning never sees) would miss it.
    monkeypatch.setenv("PL_SEED_WORKERS", "0")  # set by seed_everything; restored afterwards
    L.seed_everything(0, workers=True)
    datamodule = FineTuneDataModule({**DATA, "num_workers": 1}, label_fraction=1.0)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        limit_val_batches=1,
        limit_test_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Classifier()
    trainer.fit(model, datamodule=datamodule)
    loaders = [trainer.train_dataloader, trainer.val_dataloaders]
    trainer.test(model, datamodule=datamodule, verbose=False)
    for loader in (*loaders, trainer.test_dataloaders):
        assert loader.num_workers == 1
        assert loader.worker_init_fn.func is pl_worker_init_function


FINETUNE_TINY = [
    "data=fake",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "callbacks.progress_bar=null",
    "logger=csv",
    "pretrained_ckpt=null",
    "backbone=resnet18_slim",
    "backbone.width=0.125",
]


def test_finetuning_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    written = []
    save = AtomicCheckpointIO.save_checkpoint

    def recording(self, checkpoint, path, storage_options=None):
        written.append(Path(path))
        return save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", recording)
    cfg = compose_config([*FINETUNE_TINY, "mode=linear"], tmp_path, config_name="finetune")
    finetune.run(cfg)
    folder = tmp_path / "checkpoints"
    assert {folder / "best.ckpt", folder / "last.ckpt"} <= set(written)
    assert all(path.is_file() for path in written)


@pytest.mark.parametrize("manual_optimization", [False, True])
def test_the_trainer_builder_clips_only_under_automatic_optimisation(manual_optimization, tmp_path):
    # mode=full asks for gradient_clip_val=10; a module that steps its optimiser itself
    # (gradient caching) clips on its own, and Lightning refuses to clip for it.
    cfg = compose_config([*FINETUNE_TINY, "mode=full"], tmp_path, config_name="finetune")
    trainer = build_trainer(cfg, manual_optimization)
    assert trainer.gradient_clip_val == (None if manual_optimization else 10)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
