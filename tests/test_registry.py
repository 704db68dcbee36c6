"""One registry style for every name a config chooses: aliases, unknown names, and config
file names equal to the registry keys they select."""

import pytest

from conftest import CONFIG_DIR, compose_config
from simclr.data import DATASETS
from simclr.errors import ConfigError
from simclr.models import BACKBONES, MODES, build_backbone
from simclr.models.backbones import same_architecture
from simclr.optim import OPTIMIZERS
from simclr.registry import Registry
from simclr.rules import Rule


def test_a_registry_resolves_aliases_and_names_the_valid_ones():
    registry = Registry("colour", "paint.name")
    registry.register("red", "crimson")(1)
    registry.register("blue")(2)
    assert registry["red"] == registry["crimson"] == 1
    assert registry.canonical("crimson") == "red"
    assert "crimson" in registry and list(registry) == ["blue", "red"]  # aliases not listed
    with pytest.raises(ConfigError, match=r"^paint\.name='green': must be one of: blue, red$"):
        registry["green"]
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("scarlet", "crimson")(3)


@pytest.mark.parametrize(
    "old, new, options",
    [
        ("slim_resnet18", "resnet18_slim", {"width": 0.125}),
        ("wide_resnet50", "resnet50_w1", {"width": 1}),
        ("wide_resnet50", "resnet50_w2", {"width": 2}),
    ],
)
def test_the_backbone_names_before_the_config_names_are_aliases(old, new, options):
    # Checkpoints and exported encoders of earlier versions store the old names.
    assert BACKBONES[old] is BACKBONES[new]
    assert same_architecture({"name": old, **options}, {"name": new, **options})
    if options["width"] < 1:  # the small one: build both and compare their weights' shapes
        old_encoder, _ = build_backbone(old, image_size=32, **options)
        new_encoder, _ = build_backbone(new, image_size=32, **options)
        old_shapes = {k: v.shape for k, v in old_encoder.state_dict().items()}
        assert old_shapes == {k: v.shape for k, v in new_encoder.state_dict().items()}


@pytest.mark.parametrize(
    "group, key, registry, config_name",
    [
        ("backbone", "backbone.name", BACKBONES, "pretrain"),
        ("data", "data.name", DATASETS, "pretrain"),
        ("optimizer", "optimizer.name", OPTIMIZERS, "pretrain"),
        ("mode", "mode", MODES, "finetune"),
    ],
)
def test_every_config_file_selects_the_registry_key_of_its_name(
    tmp_path, group, key, registry, config_name
):
    options = sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))
    assert options
    for option in options:
        extra = ["pretrained_ckpt=null"] if config_name == "finetune" else []
        cfg = compose_config([f"{group}={option}", *extra], tmp_path, config_name)
        selected = cfg
        for part in key.split("."):
            selected = selected[part]
        if option in registry:
            assert selected == option
            assert registry.canonical(option) == option  # a key of its own, not an alias
        else:  # a recipe's settings of a registered entry (backbone=resnet18_half)
            assert registry.canonical(selected) == selected
    # Every registry key has its config file.
    assert set(registry) <= set(options)


def test_an_entry_keeps_the_rules_of_its_options_and_its_registrys():
    shade = Rule("paint.shade", lambda v: 0 <= v <= 1, "in [0, 1]")
    registry = Registry(
        "colour", "paint.name", entry_rules=lambda name, entry: [Rule(name, bool, "set")]
    )
    registry.register("red", "crimson", rules=[shade])(1)
    registry.register("blue")(2)
    derived, own = registry.rules_of("crimson")  # an alias finds its entry's rules
    assert derived.key == "red" and own is shade
    assert [rule.key for rule in registry.rules_of("blue")] == ["blue"]
