"""SimCLR v2's fine-tuning from a projection-head layer, the zero-initialised classifier and
the classifier's parameter group (issue 13, item 4 and the official evaluation's details)."""

import pytest
import torch
from torch import nn

from conftest import FAST_OVERRIDES, compose_config
from simclr.config import validate_config
from simclr.errors import ConfigError, DataError
from simclr.models.finetune import FineTuneModule
from simclr.models.heads import head_layers
from simclr.models.pretrained import PretrainedEncoder
from simclr.optim import LARS, build_optimizer
from simclr.tasks.export import main as export_main
from simclr.tasks.finetune import run
from simclr.tasks.pretrain import run as pretrain

# One make test worker takes this whole file: its module fixture
# (the pre-trained checkpoint) is built once.
pytestmark = pytest.mark.xdist_group("test_finetune_from_head")

FINETUNE_FAST = [
    "data=fake",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "callbacks.progress_bar=null",
    "logger=csv",
]
HEAD = {"hidden_dim": None, "output_dim": 16, "num_layers": 3, "batch_norm": True}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 1-epoch pre-training checkpoint with SimCLR v2's 3-layer projection head."""
    folder = tmp_path_factory.mktemp("pretrain")
    cfg = compose_config(
        [
            *FAST_OVERRIDES,
            "trainer.max_epochs=1",
            "logger=csv",
            "model.head.num_layers=3",
            "model.head.output_dim=16",
        ],
        folder,
    )
    pretrain(cfg)
    return folder / "checkpoints" / "last.ckpt"


def state(checkpoint, prefix: str) -> dict:
    entries = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix(prefix): v for k, v in entries.items() if k.startswith(prefix)}


def finetune_config(tmp_path, *overrides):
    return compose_config([*FINETUNE_FAST, *overrides], tmp_path, config_name="finetune")


def test_head_layer_one_is_loaded_from_the_checkpoint(pretrained, tmp_path):
    cfg = finetune_config(
        tmp_path, f"pretrained_ckpt={pretrained}", "mode=linear", "from_head_layer=1"
    )
    run(cfg)
    projection = state(pretrained, "projection.net.")
    kept = state(tmp_path / "checkpoints" / "last.ckpt", "head_layers.")
    # Layer 1 of the head: its linear layer (0) and BatchNorm (1), then a ReLU (2).
    assert sorted({k.split(".")[0] for k in kept}) == ["0", "1"]
    for key, value in kept.items():  # frozen in linear evaluation: still the pre-trained ones
        assert torch.equal(value, projection[key]), key
    # The fresh layer would differ: the weights really came from the checkpoint.
    config = PretrainedEncoder.read(pretrained).require_head().head_config
    fresh, _ = head_layers(config, projection["0.weight"].shape[1], 1)
    assert not torch.equal(fresh[0].weight, projection["0.weight"])
    # mode=linear: BatchNorm (no parameters), then the linear classifier on layer 1's output.
    classifier = state(tmp_path / "checkpoints" / "last.ckpt", "classifier.1.")
    assert classifier["weight"].shape[1] == projection["0.weight"].shape[0]


def test_the_network_carries_the_checkpoint_s_weights_and_architecture(pretrained):
    encoder = PretrainedEncoder.read(pretrained)
    network = encoder.network(from_head_layer=2)
    trained, projection = state(pretrained, "encoder."), state(pretrained, "projection.net.")
    built = network.encoder.state_dict()
    assert built.keys() == trained.keys()
    assert all(torch.equal(built[key], trained[key]) for key in trained)
    kept = network.head_layers.state_dict()
    assert kept and all(torch.equal(kept[key], projection[key]) for key in kept)
    # What a fine-tuning checkpoint records, so that PretrainedEncoder.read reads it back.
    assert network.architecture == {
        "backbone": encoder.backbone,
        "image_size": encoder.image_size,
        "head": encoder.head_config,
        "from_head_layer": 2,
    }
    assert network.output_dim == projection["3.weight"].shape[0]
    fresh = PretrainedEncoder.fresh({"name": "resnet18_slim", "width": 0.125}, 32)
    assert len(fresh.network().head_layers) == 0
    with pytest.raises(ConfigError, match="from_head_layer=1 needs the pre-trained projection"):
        fresh.network(from_head_layer=1)


def test_full_fine_tuning_from_an_export_with_the_head(pretrained, tmp_path):
    export = tmp_path / "export"
    assert export_main([str(pretrained), str(export), "--head"]) == 0
    assert (export / "head.pt").exists() and (export / "head.json").exists()
    head = PretrainedEncoder.read(export).require_head().head
    for key, value in state(pretrained, "projection.").items():
        assert torch.equal(head.state_dict[key], value)
    cfg = finetune_config(tmp_path / "run", f"pretrained_ckpt={export}", "from_head_layer=2")
    metrics = run(cfg)
    assert "test/acc" in metrics
    kept = state(tmp_path / "run" / "checkpoints" / "last.ckpt", "head_layers.")
    # Two hidden layers, each linear + BatchNorm (+ ReLU, no weights): indices 0, 1, 3, 4.
    assert sorted({k.split(".")[0] for k in kept}) == ["0", "1", "3", "4"]


def test_an_export_without_the_head_or_a_random_encoder_is_refused(pretrained, tmp_path):
    export = tmp_path / "export"
    assert export_main([str(pretrained), str(export)]) == 0
    with pytest.raises(DataError, match=r"holds no projection head.*--head"):
        run(finetune_config(tmp_path / "a", f"pretrained_ckpt={export}", "from_head_layer=1"))
    with pytest.raises(ConfigError, match=r"from_head_layer=1 .*pretrained_ckpt"):
        run(
            finetune_config(
                tmp_path / "b",
                "pretrained_ckpt=null",
                "backbone=resnet18_slim",
                "from_head_layer=1",
            )
        )
    with pytest.raises(ConfigError, match="from_head_layer=4: the pre-trained projection head"):
        run(finetune_config(tmp_path / "c", f"pretrained_ckpt={pretrained}", "from_head_layer=4"))


def test_head_layers_end_after_their_relu_and_the_last_is_z():
    layers, dim = head_layers(HEAD, input_dim=8, count=1)
    assert [type(m) for m in layers] == [nn.Linear, nn.BatchNorm1d, nn.ReLU] and dim == 8
    layers, dim = head_layers(HEAD, input_dim=8, count=3)
    assert isinstance(layers[-1], nn.BatchNorm1d) and dim == 16  # z: no ReLU after it
    layers, dim = head_layers(HEAD, input_dim=8, count=0)
    assert len(layers) == 0 and dim == 8


def module(**options) -> FineTuneModule:
    return FineTuneModule(
        PretrainedEncoder.fresh({"name": "resnet18_slim", "width": 0.125}, 32).network(),
        num_classes=10,
        mode="full",
        optimizer={"name": "lars", "lr": 0.1, "weight_decay": 1e-4},
        scheduler={},
        batch_size=256,
        **options,
    )


def test_zero_initialised_classifier_gives_zero_logits():
    model = module(zero_init_classifier=True).eval()
    assert torch.equal(model(torch.randn(2, 3, 32, 32)), torch.zeros(2, 10))
    assert module().linear.weight.abs().sum() > 0  # PyTorch's default otherwise


@pytest.mark.parametrize(
    "group,decay,adapted",
    [("weights", 1e-4, True), ("unadapted", 1e-4, False), ("excluded", 0.0, False)],
)
def test_the_classifier_weight_goes_in_the_chosen_group(group, decay, adapted):
    model = module(classifier_group=group, zero_init_classifier=True)
    optimizer = build_optimizer(
        model, "lars", 0.1, 256, weight_decay=1e-4, groups=model.parameter_groups(1e-4)
    )
    assert isinstance(optimizer, LARS)
    (found,) = [
        g for g in optimizer.param_groups if any(p is model.linear.weight for p in g["params"])
    ]
    assert found["weight_decay"] == decay and found["lars_exclude"] is not adapted
    assert len(found["params"]) == 1  # the classifier's weight alone; the encoder's elsewhere
    # Behaviour: after one step from zero, an adapted classifier's step shrinks to the trust
    # ratio (0.001 x ||w|| / ||g||); an unadapted one keeps the plain step lr x g.
    model.linear.weight.grad = torch.ones_like(model.linear.weight)
    optimizer.step()
    first = model.linear.weight.detach().clone()
    optimizer.state.clear()
    optimizer.step()
    second = model.linear.weight.detach() - first
    ratio = (second.norm() / first.norm()).item()
    assert (ratio < 0.01) if adapted else (ratio == pytest.approx(1.0, rel=1e-3))


def test_the_config_checks_name_the_new_keys(tmp_path):
    cfg = finetune_config(
        tmp_path, "pretrained_ckpt=null", "from_head_layer=-1", "classifier_group=foo"
    )
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    assert "from_head_layer=-1: must be an integer >= 0" in str(error.value)
    assert "classifier_group='foo': must be one of: excluded, unadapted, weights" in str(
        error.value
    )
