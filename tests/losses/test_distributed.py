"""Real DDP (2 CPU processes, gloo) against one process on the whole batch.

The two processes are forked from a server that has imported torch and Lightning already
(``ddp_runs.forkserver``), so a run takes about a second and every case, gradient caching
under DDP and both broken gathers included, is in the default suite.

The encoder's BatchNorm layers are frozen (eval mode) and the head has none: torch's
SyncBatchNorm does not run on CPU, and per-device BatchNorm statistics would differ from the
full batch's, so with training-mode BatchNorm the two runs could not agree whatever the gather
does. Everything else is the real training step: NT-Xent with negatives gathered from both
ranks, DDP's gradient averaging, the logged loss.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
from torch import nn

from ddp_runs import FixedViews, fit_on_cpu_processes, seeded_module
from simclr.losses.ntxent import NTXentLoss, distributed_world, gather_across_ranks
from simclr.models import SimCLRModule

# One make test worker takes this whole file: its module fixture
# (the one-process reference) is built once.
pytestmark = pytest.mark.xdist_group("test_distributed")

NUM_IMAGES, IMAGE_SIZE, WORLD_SIZE = 8, 8, 2


class RecordFirstStep(L.Callback):
    """Freezes BatchNorm; saves this rank's loss, logged loss and encoder gradients."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.gradients = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for module in pl_module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.gradients = {
            name: p.grad.detach().clone() for name, p in pl_module.encoder.named_parameters()
        }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        record = {
            "loss": outputs["loss"].detach().clone(),
            "logged_loss": trainer.callback_metrics["train/loss_step"].clone(),
            "gradients": self.gradients,
            "num_images": len(batch[1]),
        }
        torch.save(record, self.out_dir / f"rank{trainer.global_rank}_of_{trainer.world_size}.pt")


class NoGradientGather(NTXentLoss):
    """The common bug: a plain all_gather (no gradient), this rank's own slice put back."""

    def gather(self, flat):
        rank, world_size = distributed_world()
        parts = [torch.empty_like(flat) for _ in range(world_size)]
        dist.all_gather(parts, flat.detach().contiguous())
        parts[rank] = flat
        return torch.cat(parts)


class _LocalSliceGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor):
        rank, world_size = distributed_world()
        ctx.rank, ctx.size = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        # Missing all-reduce: only this rank's own loss reaches its projections.
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


class BackwardWithoutAllReduce(NTXentLoss):
    """The other common bug: the backward slices the local gradient without summing ranks."""

    def gather(self, flat):
        return _LocalSliceGather.apply(flat)


def make_module(micro_batch_size=None) -> SimCLRModule:
    return seeded_module(IMAGE_SIZE, NUM_IMAGES, micro_batch_size=micro_batch_size)


def one_step(module: SimCLRModule, out_dir: Path, devices: int) -> list[dict]:
    """One optimiser step on the fixed batch (split over ``devices`` processes)."""
    out_dir.mkdir()
    return fit_on_cpu_processes(
        module,
        FixedViews(NUM_IMAGES, IMAGE_SIZE, seed=3),
        NUM_IMAGES,
        RecordFirstStep(out_dir),
        out_dir,
        devices,
        max_steps=1,
    )


def max_relative_difference(actual: dict, expected: dict) -> float:
    """Largest ``max |a - e| / max |e|`` over the gradient tensors."""
    worst = 0.0
    for name, grad in expected.items():
        scale = grad.abs().max().clamp_min(1e-12)
        worst = max(worst, float((actual[name] - grad).abs().max() / scale))
    return worst


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The reference: one process, the whole batch of NUM_IMAGES."""
    (record,) = one_step(make_module(), tmp_path_factory.mktemp("single") / "run", devices=1)
    assert record["num_images"] == NUM_IMAGES
    return record


def ddp_step(tmp_path, criterion=None, micro_batch_size=None):
    module = make_module(micro_batch_size)
    if criterion is not None:
        module.criterion = criterion
    records = one_step(module, tmp_path / "ddp", devices=WORLD_SIZE)
    assert [r["num_images"] for r in records] == [NUM_IMAGES // WORLD_SIZE] * WORLD_SIZE
    return records


def assert_matches_single_process(records, single):
    global_loss = torch.stack([r["loss"] for r in records]).mean()
    assert global_loss.item() == pytest.approx(single["loss"].item(), rel=1e-5)
    # The logged loss is the mean over ranks, i.e. the global batch's loss.
    assert records[0]["logged_loss"].item() == pytest.approx(single["loss"].item(), rel=1e-5)
    for record in records:  # DDP leaves both ranks with the same, averaged, gradient
        assert max_relative_difference(record["gradients"], single["gradients"]) <= 1e-5


def test_ddp_loss_and_gradients_equal_one_process_on_the_whole_batch(tmp_path, single_process):
    assert_matches_single_process(ddp_step(tmp_path), single_process)


def test_ddp_with_gradient_caching_equals_one_process_on_the_whole_batch(tmp_path, single_process):
    records = ddp_step(tmp_path, micro_batch_size=1)  # 4 images a rank, 1 per pass
    assert_matches_single_process(records, single_process)


@pytest.mark.parametrize(
    "broken_gather",
    [NoGradientGather, BackwardWithoutAllReduce],
)
def test_a_gather_without_the_summed_gradient_fails_the_comparison(
    tmp_path, single_process, broken_gather
):
    records = ddp_step(tmp_path, criterion=broken_gather(temperature=0.2))
    # The loss is right (the forward is the same) ...
    global_loss = torch.stack([r["loss"] for r in records]).mean()
    assert global_loss.item() == pytest.approx(single_process["loss"].item(), rel=1e-5)
    # ... the gradients are not, and the comparison of the test above tells.
    with pytest.raises(AssertionError):
        assert_matches_single_process(records, single_process)
    assert max_relative_difference(records[0]["gradients"], single_process["gradients"]) > 1e-2


def test_gather_is_the_identity_in_a_single_process():
    z = torch.randn(6, 4, requires_grad=True)
    assert gather_across_ranks(z) is z
    assert distributed_world() == (0, 1)


def test_sync_batchnorm_on_cpu_stops_with_a_clear_message(tmp_path):
    from simclr.errors import ConfigError

    # What Lightning's sync_batchnorm=true makes of the module, on a 2-process CPU run.
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(make_module())

    class TwoProcesses:
        world_size = 2

    synced._trainer = TwoProcesses()
    with pytest.raises(ConfigError, match="sync_batchnorm"):
        synced.on_fit_start()
