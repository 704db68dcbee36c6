"""Training from shards (data=streaming): pre-training and fine-tuning run on them, two DDP
processes read disjoint parts that together make the epoch, and a run stopped mid-epoch
resumes with exactly the images it had not trained on (and ends with the same weights)."""

import json
import signal
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from shard_files import NUM_TRAIN, write_photo_folder

from conftest import (
    NO_MONITORS_CHECKPOINT_EVERY_STEP,
    ROOT,
    assert_accuracies_counted,
    compose_config,
    finish,
    run_script,
    start_python,
)
from ddp_runs import forkserver
from simclr.callbacks.preemption import Preempted, PreemptionHandler
from simclr.data.prepare import prepare
from simclr.models import SimCLRModule
from simclr.tasks.finetune import run as finetune
from simclr.tasks.pretrain import build_datamodule
from simclr.tasks.pretrain import run as pretrain

# One make test worker takes this whole file: its module fixture
# (the shards) is built once.
pytestmark = pytest.mark.xdist_group("test_streaming_training")

pytest.importorskip("litdata")

# 24 images (one per class, so labels name images) in batches of 4: 6 steps an epoch.
STREAMING = [
    "data=streaming",
    "data.image_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "backbone=resnet18_slim",
    "backbone.width=0.125",
    "trainer=cpu",
    "callbacks.progress_bar=null",
    "logger=csv",
]
NO_MONITORS = NO_MONITORS_CHECKPOINT_EVERY_STEP


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaming")
    write_photo_folder(folder / "photos")
    prepare(str(folder / "photos"), str(folder / "shards"), progress=False)
    return folder / "shards"


def test_pretraining_and_finetuning_run_on_shards(shards, tmp_path):
    data = [*STREAMING, f"data.root={shards}"]
    metrics = pretrain(compose_config([*data, "trainer.fast_dev_run=true"], tmp_path / "pre"))
    assert torch.isfinite(torch.tensor(metrics["train/loss_step"]))
    tuned = finetune(
        compose_config(
            [*data, "pretrained_ckpt=null", "trainer.max_epochs=1", "data.batch_size=8"],
            tmp_path / "tune",
            "finetune",
        )
    )
    assert_accuracies_counted(tuned)


@pytest.mark.slow
def test_train_py_prepares_and_pretrains_on_shards(tmp_path):
    """The commands a user types: the prepare module, then train.py (two subprocesses)."""
    write_photo_folder(tmp_path / "photos")
    command = ["-m", "simclr.data.prepare", str(tmp_path / "photos"), str(tmp_path / "shards")]
    prepared = finish(start_python([*command, "--max-side", "48"], tmp_path))
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    assert "shards complete" in prepared.stdout
    args = [*STREAMING, f"data.root={tmp_path / 'shards'}", "trainer.fast_dev_run=true"]
    result = run_script("train.py", [*args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train/loss_epoch" in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_a_subset_of_a_split_streams_exactly_its_images(shards, tmp_path):
    datamodule = build_datamodule(compose_config([*STREAMING, f"data.root={shards}"], tmp_path))
    train = datamodule.load_splits().train
    chosen = [1, 4, 5, 9, 10, 17, 20, 23]
    options = {"num_workers": 0, "pin_memory": False, "prefetch_factor": 2, "drop_last": True}
    loader = train.training_loader(lambda image: 0, 3, 4, options, indices=chosen)
    assert sorted(label for _, labels in loader for label in labels.tolist()) == chosen


def read_epoch(rank: int, world_size: int, port: int, root: str, output: str) -> None:
    """One DDP process: the labels of its pre-training batches in epoch 1."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        cfg = compose_config([*STREAMING, f"data.root={root}"], ROOT / "unused")
        datamodule = build_datamodule(cfg)
        datamodule.trainer = SimpleNamespace(world_size=world_size, global_rank=rank)
        loader = datamodule.train_dataloader()
        batches = [labels.tolist() for _, labels in loader]
        with open(f"{output}.{rank}", "w") as f:
            json.dump(batches, f)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ddp_processes_read_disjoint_parts_that_make_the_epoch(shards, tmp_path):
    output = str(tmp_path / "seen")
    args = (2, free_port(), str(shards), output)
    mp.start_processes(read_epoch, args=args, nprocs=2, start_method=forkserver())
    parts = [json.loads(Path(f"{output}.{rank}").read_text()) for rank in range(2)]
    seen = [[label for batch in part for label in batch] for part in parts]
    # A global batch of 4: 2 images per process a step, 6 steps each.
    assert [len(batch) for part in parts for batch in part] == [2] * 12
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(NUM_TRAIN))


def record_batches(monkeypatch) -> list[tuple[int, list[int]]]:
    """``(epoch, labels)`` of every training batch the runs train on from now."""
    seen: list[tuple[int, list[int]]] = []
    original = SimCLRModule.training_step

    def training_step(self, batch, batch_idx):
        seen.append((self.current_epoch, batch[1].tolist()))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(SimCLRModule, "training_step", training_step)
    return seen


def stop_after_step(monkeypatch, step: int) -> None:
    """The run stops after optimiser step ``step`` as on a SIGTERM: ``last.ckpt`` of that step
    (the pre-emption handler's), then :class:`Preempted`."""
    original = PreemptionHandler.on_train_batch_end

    def hook(self, trainer, *args):
        if trainer.global_step == step:
            self.received = signal.SIGTERM
        return original(self, trainer, *args)

    monkeypatch.setattr(PreemptionHandler, "on_train_batch_end", hook)


def weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize(
    "workers, step",
    [
        (0, 3),
        pytest.param(2, 8, marks=pytest.mark.slow),
        pytest.param(0, 6, marks=pytest.mark.slow),
    ],
    ids=["in-process-epoch-0", "two-workers-epoch-1", "at-the-end-of-epoch-0"],
)
def test_a_resumed_run_trains_on_exactly_the_unseen_rest_of_the_epoch(
    shards, tmp_path, monkeypatch, workers, step
):
    overrides = [
        *STREAMING,
        *NO_MONITORS,
        f"data.root={shards}",
        f"data.num_workers={workers}",
        "trainer.max_epochs=2",
    ]
    seen = record_batches(monkeypatch)
    pretrain(compose_config(overrides, tmp_path / "whole"))
    whole = list(seen)
    assert len(whole) == 12
    for epoch in (0, 1):  # every image once an epoch, in another order each epoch
        labels = [x for e, batch in whole if e == epoch for x in batch]
        assert sorted(labels) == list(range(NUM_TRAIN))

    seen.clear()
    stop_after_step(monkeypatch, step)
    with pytest.raises(Preempted):
        pretrain(compose_config(overrides, tmp_path / "stopped"))
    before = list(seen)
    assert before == whole[:step]
    checkpoint = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    loader_state = saved["SimCLRDataModule"]["loader"]
    assert loader_state["num_samples_yielded"] == (step % 6) * 4  # trained on, not fetched

    seen.clear()
    stop_after_step(monkeypatch, -1)
    pretrain(compose_config([*overrides, f"ckpt_path={checkpoint}"], tmp_path / "resumed"))
    assert seen == whole[step:]
    last = weights(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    resumed = weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(last[k], resumed[k]) for k in last)


@pytest.mark.slow
def test_a_resumed_finetuning_on_shards_ends_with_the_uninterrupted_weights(
    shards, tmp_path, monkeypatch
):
    # 3 epochs of 3 batches of 8; stopped after step 4, in the middle of epoch 1.
    overrides = [
        *STREAMING,
        f"data.root={shards}",
        "data.batch_size=8",
        "pretrained_ckpt=null",
        "trainer.max_epochs=3",
    ]
    finetune(compose_config(overrides, tmp_path / "whole", "finetune"))
    stop_after_step(monkeypatch, 4)
    with pytest.raises(Preempted):
        finetune(compose_config(overrides, tmp_path / "stopped", "finetune"))
    checkpoint = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["FineTuneDataModule"]["loader"]["num_samples_yielded"] == 8
    stop_after_step(monkeypatch, -1)
    resumed = [*overrides, f"ckpt_path={checkpoint}"]
    finetune(compose_config(resumed, tmp_path / "resumed", "finetune"))
    last = weights(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    again = weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(last[k], again[k]) for k in last)
