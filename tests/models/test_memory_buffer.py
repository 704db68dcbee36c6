"""SimCLR v2's memory buffer in the pre-training module (``model.memory``): off by default (no
new checkpoint keys), the momentum encoder's moving average, what fills the queue, and the
config checks of its options."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import compose_config
from ddp_runs import FixedViews
from simclr.config import config_problems
from simclr.errors import ConfigError
from simclr.models import SimCLRModule
from simclr.models.momentum_encoder import MomentumEncoder

NUM_IMAGES, IMAGE_SIZE = 8, 8


def make_module(memory=None, **options) -> SimCLRModule:
    torch.manual_seed(0)
    return SimCLRModule(
        backbone={"name": "slim_resnet18", "width": 0.125},
        head={"hidden_dim": 32, "output_dim": 16},
        optimizer={"name": "sgd", "lr": 0.1, "lr_scaling": "none"},
        scheduler={"warmup_epochs": 0},
        image_size=IMAGE_SIZE,
        batch_size=NUM_IMAGES,
        temperature=0.2,
        memory=memory,
        **options,
    )


def fit(module: SimCLRModule, steps: int) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(FixedViews(NUM_IMAGES * steps, IMAGE_SIZE, seed=1), batch_size=NUM_IMAGES)
    trainer.fit(module, train_dataloaders=loader)


def test_off_by_default_and_without_new_checkpoint_keys(tmp_path):
    cfg = compose_config([], tmp_path)
    assert cfg.model.memory.size == 0
    for memory in (None, {"size": 0, "momentum": 0.999, "source": "momentum"}):
        module = make_module(memory)
        assert module.memory is None
        assert not any(key.startswith("memory.") for key in module.state_dict())


def test_momentum_encoder_moves_by_the_moving_average():
    online = torch.nn.Linear(3, 2)
    head = torch.nn.Identity()
    copy = MomentumEncoder(online, head, momentum=0.75)
    start = copy.encoder.weight.clone()
    assert not any(p.requires_grad for p in copy.parameters())
    with torch.no_grad():
        online.weight.add_(1.0)
    copy.update(online, head)
    torch.testing.assert_close(copy.encoder.weight, 0.75 * start + 0.25 * online.weight)


@pytest.mark.parametrize(
    "source, options",
    [
        ("momentum", {}),
        ("online", {}),
        ("momentum", {"micro_batch_size": 3}),  # gradient caching: keys 3 images a pass
        ("online", {"micro_batch_size": 3}),
        ("momentum", {"view_passes": True}),
    ],
    ids=["momentum", "online", "momentum-gradcache", "online-gradcache", "momentum-view-passes"],
)
def test_every_step_queues_its_keys_and_the_next_step_contrasts_with_them(source, options):
    module = make_module({"size": 40, "momentum": 0.99, "source": source}, **options)
    assert (module.memory.momentum_encoder is None) == (source == "online")
    seen = []
    original = module.criterion.forward

    def record(z, negatives=None):
        seen.append(0 if negatives is None else negatives.shape[0])
        return original(z, negatives)

    module.criterion.forward = record
    fit(module, steps=3)
    # 16 keys a step (2 views x 8 images); the third step meets the first two steps' keys.
    assert seen == [0, 16, 32]
    queue = module.memory.queue
    assert (queue.filled.item(), queue.pointer.item()) == (40, 48 % 40)
    # Keys are projections: unit length once normalised, and no two alike.
    assert torch.isfinite(queue.keys).all() and queue.keys.norm(dim=1).min() > 0


def test_the_momentum_encoder_starts_as_the_encoder_and_lags_behind_it():
    module = make_module({"size": 16, "momentum": 0.9, "source": "momentum"})
    copy = module.memory.momentum_encoder
    for mine, theirs in zip(copy.encoder.parameters(), module.encoder.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    fit(module, steps=2)
    pairs = zip(copy.encoder.parameters(), module.encoder.parameters(), strict=True)
    moved = [(mine - theirs).abs().max().item() for mine, theirs in pairs]
    assert max(moved) > 0  # the encoder took two steps, the copy a tenth of one


def test_memory_options_are_checked_before_any_work(tmp_path):
    cfg = compose_config(
        ["model.memory.size=-1", "model.memory.momentum=1.5", "model.memory.source=bank"],
        tmp_path,
    )
    problems = "\n".join(config_problems(cfg))
    assert "model.memory.size=-1: must be an integer >= 0" in problems
    assert "model.memory.momentum=1.5: must be in [0, 1]" in problems
    assert "model.memory.source='bank': must be one of momentum, online" in problems
    good = compose_config(["model.memory.size=65536", "model.memory.source=online"], tmp_path)
    assert config_problems(good) == []


def test_the_module_refuses_the_same_values_with_the_same_message():
    with pytest.raises(ConfigError, match=r"model\.memory\.momentum=1\.5: must be in \[0, 1\]"):
        make_module({"size": 8, "momentum": 1.5, "source": "momentum"})
    with pytest.raises(ConfigError, match=r"model\.memory\.source='bank'"):
        make_module({"size": 8, "momentum": 0.9, "source": "bank"})


def test_at_momentum_zero_the_momentum_keys_are_the_step_s_own_projections():
    """With m = 0 the copy takes the encoder's weights at the start of each step, before it
    projects that step's views in training mode: its keys, and so the whole run, must be those
    of ``source=online`` to the bit (a copy updated after its keys, or run in eval mode, is not).
    """
    runs = {}
    for source in ("momentum", "online"):
        runs[source] = make_module({"size": 40, "momentum": 0.0, "source": source})
        fit(runs[source], steps=3)
    assert torch.equal(runs["momentum"].memory.queue.keys, runs["online"].memory.queue.keys)
    momentum, online = runs["momentum"].encoder, runs["online"].encoder
    pairs = zip(momentum.parameters(), online.parameters(), strict=True)
    assert all(torch.equal(mine, theirs) for mine, theirs in pairs)
