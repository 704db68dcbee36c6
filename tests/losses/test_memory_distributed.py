"""SimCLR v2's memory buffer under real DDP (2 CPU processes, gloo, from the tests' fork server):
after two steps, each rank's queue holds the keys one process holds after the same two global
batches, in the order of one process whose batch is the ranks' batches one after the other
(view by view), and the second step's loss (which contrasts with the first step's
keys) is the one process's.

As in test_distributed.py, BatchNorm is frozen (eval mode) in the encoder and in the momentum
encoder, and the head has none: per-device BatchNorm statistics would differ from the whole
batch's whatever the queue does. Each rank has its own copy of the module
(:class:`ddp_runs.OwnCopy`): with one shared copy the ranks would advance one write position
together, and the comparison fails. The file takes about 13 s.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from ddp_runs import FixedViews, fit_on_cpu_processes, seeded_module
from simclr.losses.negative_queue import NegativeQueue

pytestmark = pytest.mark.xdist_group("test_memory_distributed")

NUM_IMAGES, STEPS, IMAGE_SIZE, WORLD_SIZE = 8, 2, 8, 2
# Keys held: more than the 16 of one step, fewer than the 32 of two, so the second step wraps.
# Every step sees the same 8 images (one batch an epoch), so the sets of images agree.
QUEUE_SIZE = 24


class Record(L.Callback):
    """Freezes BatchNorm; saves this rank's per-step losses and images, and its final queue."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.losses, self.labels = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for module in pl_module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(trainer.callback_metrics["train/loss_step"].clone())
        self.labels.append(batch[1].clone())

    def on_train_end(self, trainer, pl_module):
        queue = pl_module.memory.queue
        record = {
            "losses": self.losses,
            "labels": self.labels,
            "keys": queue.keys.clone(),
            "pointer": queue.pointer.clone(),
            "filled": queue.filled.clone(),
        }
        torch.save(record, self.out_dir / f"rank{trainer.global_rank}_of_{trainer.world_size}.pt")


def run(out_dir: Path, devices: int, queue: type[NegativeQueue] | None = None) -> list[dict]:
    memory = {"size": QUEUE_SIZE, "momentum": 0.5, "source": "momentum"}
    module = seeded_module(IMAGE_SIZE, NUM_IMAGES, memory=memory)
    if queue is not None:
        module.memory.queue = queue(QUEUE_SIZE, 16)
    out_dir.mkdir()
    return fit_on_cpu_processes(
        module,
        # One global batch: every step (an epoch) sees all the images, in the sampler's order.
        FixedViews(NUM_IMAGES, IMAGE_SIZE, seed=5),
        NUM_IMAGES,
        Record(out_dir),
        out_dir,
        devices,
        max_steps=STEPS,
    )


def expected_queue(single: dict, ranks: list[dict]) -> torch.Tensor:
    """The one-process queue rearranged into the order a DDP run writes its keys: each step,
    view by view, rank 0's images then rank 1's (the images each rank recorded)."""
    step_labels = single["labels"]
    row_of = {}  # (step, view, image) -> row of the one-process queue
    row = 0
    for step, labels in enumerate(step_labels):
        for view in range(2):
            for image in labels.tolist():
                row_of[step, view, image] = row % QUEUE_SIZE
                row += 1
    order = [None] * QUEUE_SIZE
    row = 0
    for step in range(STEPS):
        for view in range(2):
            for record in ranks:
                for image in record["labels"][step].tolist():
                    order[row % QUEUE_SIZE] = row_of[step, view, image]
                    row += 1
    return single["keys"][order]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    (record,) = run(tmp_path_factory.mktemp("single") / "run", devices=1)
    return record


def assert_ddp_queue_equals_one_process(ranks: list[dict], single: dict) -> None:
    # Both runs saw the same images each step (the ranks' together; the sampler shuffles).
    for step in range(STEPS):
        together = sorted(torch.cat([r["labels"][step] for r in ranks]).tolist())
        assert together == sorted(single["labels"][step].tolist())
    for record in ranks:
        assert record["filled"].item() == single["filled"].item() == QUEUE_SIZE
        assert record["pointer"].item() == single["pointer"].item() == 32 % QUEUE_SIZE
        torch.testing.assert_close(
            record["keys"], expected_queue(single, ranks), rtol=1e-5, atol=1e-6
        )
    # The second step contrasted with the first step's keys, as the one process did.
    for step in range(STEPS):
        assert ranks[0]["losses"][step].item() == pytest.approx(
            single["losses"][step].item(), rel=1e-5
        )


def test_ddp_queues_the_keys_of_one_process_on_the_whole_batch(tmp_path, single_process):
    ranks = run(tmp_path / "ddp", devices=WORLD_SIZE)
    assert_ddp_queue_equals_one_process(ranks, single_process)


class RankOnlyQueue(NegativeQueue):
    """The bug: each rank queues only its own keys."""

    def gather(self, keys):
        return keys.detach()


class RankOrderQueue(NegativeQueue):
    """Every rank's keys, but rank after rank instead of view by view."""

    def gather(self, keys):
        parts = [torch.empty_like(keys) for _ in range(WORLD_SIZE)]
        torch.distributed.all_gather(parts, keys.contiguous())
        return torch.cat(parts, dim=0).reshape(keys.shape[0], -1, keys.shape[-1])


@pytest.mark.parametrize("broken_queue", [RankOnlyQueue, RankOrderQueue])
def test_a_queue_without_every_ranks_keys_in_order_fails_the_comparison(
    tmp_path, single_process, broken_queue
):
    ranks = run(tmp_path / "ddp", devices=WORLD_SIZE, queue=broken_queue)
    with pytest.raises(AssertionError):
        assert_ddp_queue_equals_one_process(ranks, single_process)
