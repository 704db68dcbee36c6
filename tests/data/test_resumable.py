"""The resumable data stream: the epoch's order from (seed, epoch), the views from
(seed, epoch, index), the position restored from a checkpoint, whatever the workers."""

import torch

from conftest import FAST_OVERRIDES, compose_config
from simclr.data.resumable import EpochShuffle, SeededViews, rng_states
from simclr.tasks.pretrain import build_datamodule


def test_epoch_order_depends_on_seed_and_epoch_only():
    sampler = EpochShuffle(50, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    assert sorted(index for _, index in first) == list(range(50))
    assert {epoch for epoch, _ in first} == {2}
    assert list(EpochShuffle(50, seed=3, epoch=2)) == first
    assert list(EpochShuffle(50, seed=3, epoch=1)) != first
    assert list(EpochShuffle(50, seed=4, epoch=2)) != first


def test_skip_applies_to_the_first_pass_of_its_epoch_only():
    full = list(EpochShuffle(20, seed=0, epoch=1))
    sampler = EpochShuffle(20, seed=0, epoch=1, skip=8)
    sampler.set_epoch(1)  # Lightning sets the epoch it resumes in: the position stays
    assert list(sampler) == full[8:]
    assert list(sampler) == full
    assert len(sampler) == 20


def test_seeded_views_repeat_and_leave_the_global_generator_alone():
    images = [(torch.zeros(3), 0)] * 4
    views = SeededViews(images, lambda x: x + torch.rand(3), seed=7)
    state = torch.get_rng_state()
    assert torch.equal(views[(1, 2)][0], views[(1, 2)][0])
    assert not torch.equal(views[(1, 2)][0], views[(2, 2)][0])
    assert not torch.equal(views[(1, 2)][0], views[(1, 3)][0])
    assert torch.equal(torch.get_rng_state(), state)


def resumed_batches(tmp_path, workers: int, batches_done: int) -> list[torch.Tensor]:
    """The first view of every batch a resumed run reads in epoch 1, ``batches_done`` batches
    into it, with ``workers`` data-loader workers."""
    cfg = compose_config([*FAST_OVERRIDES, f"data.num_workers={workers}"], tmp_path)
    datamodule = build_datamodule(cfg)
    state = {"seed": 11, "epoch": 1, "batches_done": batches_done, "rng": rng_states()}
    datamodule.load_state_dict(state)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(1)
    return [views[0] for views, _ in loader]


def test_views_after_a_resume_do_not_depend_on_the_number_of_workers(tmp_path):
    uninterrupted = resumed_batches(tmp_path, workers=0, batches_done=0)
    assert len(uninterrupted) == 4  # 64 fake images, batches of 16
    for workers in (0, 2):
        resumed = resumed_batches(tmp_path, workers=workers, batches_done=1)
        assert len(resumed) == 3
        assert all(torch.equal(a, b) for a, b in zip(uninterrupted[1:], resumed, strict=True))


def test_processes_share_one_order_each_taking_its_part():
    whole = [index for _, index in EpochShuffle(10, seed=5, epoch=3)]
    parts = [
        [i for _, i in EpochShuffle(10, seed=5, epoch=3, num_replicas=3, rank=r)] for r in range(3)
    ]
    assert all(len(part) == 4 for part in parts)  # 10 padded to 12
    assert sorted(i for part in parts for i in part) == sorted(whole + whole[:2])
    assert parts[1] == (whole + whole[:2])[1::3]
