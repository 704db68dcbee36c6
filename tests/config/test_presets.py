"""Presets choose components rather than patch them: a backbone or an optimiser chosen on the
command line replaces the preset's whole, so every preset composes and passes the config
checks with every backbone and every optimiser."""

from __future__ import annotations

import copy
import math

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from conftest import CONFIG_DIR, OLD_CHECKPOINT_DIR, run_script
from simclr.config import config_problems
from simclr.tasks.pretrain import run


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


# (config name, preset group, preset): pre-training's and fine-tuning's presets.
PRESETS = [("pretrain", "experiment", name) for name in options("experiment")] + [
    ("finetune", "evaluation", name) for name in options("evaluation")
]
BACKBONES = options("backbone")
OPTIMIZERS = options("optimizer")
# Fine-tuning from a checkpoint that exists (the checks read no file: the backbone chosen is
# checked against the checkpoint's when the encoder is read), so that every preset can keep
# layers of its head (from_head_layer > 0, which pretrained_ckpt=null refuses).
FINETUNE_EXTRA = [f"pretrained_ckpt={OLD_CHECKPOINT_DIR / 'last.ckpt'}"]
# What a user gives with an option whose config leaves a value unset (???): timm's model.
GIVEN_WITH = {"backbone=timm": ["backbone.model=resnet18"]}


@pytest.fixture(scope="module")
def composer(tmp_path_factory):
    """``compose(config_name, overrides)``, one Hydra initialisation for the whole module and
    each config composed once."""
    output_dir = tmp_path_factory.mktemp("presets")
    paths = [f"paths.root_dir={output_dir}", f"paths.output_dir={output_dir}"]
    cache: dict[tuple, DictConfig] = {}
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):

        def composed(config_name: str, *overrides: str) -> DictConfig:
            key = (config_name, *overrides)
            if key not in cache:
                extra = FINETUNE_EXTRA if config_name == "finetune" else []
                given = [value for option in overrides for value in GIVEN_WITH.get(option, [])]
                cache[key] = compose(config_name, overrides=[*overrides, *given, *extra, *paths])
            return cache[key].copy()

        yield composed


ALONE: dict[tuple[str, str], dict] = {}


def group_alone(composer, group: str, option: str) -> dict:
    """The node ``group`` when only it is chosen: what the option's file holds (a copy of the
    one made for the module)."""
    if (group, option) not in ALONE:
        ALONE[group, option] = OmegaConf.to_container(
            composer("pretrain", f"{group}={option}")[group]
        )
    return copy.deepcopy(ALONE[group, option])


@pytest.mark.parametrize("group", ["experiment", "evaluation", "mode"])
def test_presets_choose_backbones_and_optimisers_instead_of_patching_them(group):
    # A preset that set backbone.width or optimizer.lr would leave its value on the backbone
    # or optimiser chosen on the command line ("width must be 1" on resnet50).
    for name in options(group):
        preset = OmegaConf.load(CONFIG_DIR / group / f"{name}.yaml")
        assert "backbone" not in preset and "optimizer" not in preset, f"{group}/{name}"


@pytest.mark.parametrize("config_name, group, preset", PRESETS, ids=lambda x: str(x))
def test_a_group_chosen_on_the_command_line_replaces_the_presets(
    composer, config_name, group, preset
):
    # One other backbone and optimiser per preset, in turn, so that each appears.
    index = [p for _, _, p in PRESETS].index(preset)
    backbone = BACKBONES[index % len(BACKBONES)]
    optimizer = OPTIMIZERS[index % len(OPTIMIZERS)]
    cfg = composer(
        config_name, f"{group}={preset}", f"backbone={backbone}", f"optimizer={optimizer}"
    )
    assert OmegaConf.to_container(cfg.backbone) == group_alone(composer, "backbone", backbone)
    assert OmegaConf.to_container(cfg.optimizer) == group_alone(composer, "optimizer", optimizer)
    assert config_problems(cfg) == []


def with_groups(base: DictConfig, **nodes: dict) -> DictConfig:
    """``base`` with its ``backbone`` or ``optimizer`` node replaced: what a command line that
    chooses them composes (the test above)."""
    cfg = base.copy()
    with open_dict(cfg):
        for group, node in nodes.items():
            cfg[group] = node
    return cfg


@pytest.mark.parametrize("config_name, group, preset", PRESETS, ids=lambda x: str(x))
def test_every_preset_passes_the_checks_with_every_backbone_and_every_optimiser(
    composer, config_name, group, preset
):
    # No check reads both the backbone and the optimiser, so each is tried with the preset's
    # other choice (the full product: the slow test below).
    base = composer(config_name, f"{group}={preset}")
    for option_group, choices in (("backbone", BACKBONES), ("optimizer", OPTIMIZERS)):
        for option in choices:
            cfg = with_groups(base, **{option_group: group_alone(composer, option_group, option)})
            assert config_problems(cfg) == [], f"{preset} {option_group}={option}"


@pytest.mark.slow
@pytest.mark.parametrize("config_name, group, preset", PRESETS, ids=lambda x: str(x))
def test_every_preset_passes_the_checks_with_every_backbone_and_optimiser_pair(
    composer, config_name, group, preset
):
    base = composer(config_name, f"{group}={preset}")
    for backbone in BACKBONES:
        for optimizer in OPTIMIZERS:
            cfg = with_groups(
                base,
                backbone=group_alone(composer, "backbone", backbone),
                optimizer=group_alone(composer, "optimizer", optimizer),
            )
            assert config_problems(cfg) == [], f"{preset} backbone={backbone} {optimizer}"


def test_digits_quick_keeps_its_half_width_slim_resnet18_and_lars(composer):
    # The values that reach the model: README "Quick start" (make train).
    cfg = composer("pretrain", "experiment=digits_quick")
    assert OmegaConf.to_container(cfg.backbone) == {
        "name": "resnet18_slim",
        "width": 0.5,
        "depthwise": False,
        "small_stem": None,
        "zero_init_residual": True,
    }
    assert OmegaConf.to_container(cfg.optimizer) == {
        "name": "lars",
        "lr": 0.075,
        "lr_scaling": "sqrt",
        "weight_decay": 1.0e-4,
        "momentum": 0.9,
        "trust_coefficient": 0.001,
    }


def test_a_backbone_option_it_does_not_take_is_refused_before_any_work(composer):
    cfg = composer("pretrain", "backbone=resnet50", "+backbone.model_args={num_heads: 12}")
    (problem,) = config_problems(cfg)
    assert problem.startswith("backbone.model_args: backbone 'resnet50' takes no option")
    cfg = composer("pretrain", "optimizer=adamw", "+optimizer.momentum=0.9")
    (problem,) = config_problems(cfg)
    assert problem.startswith("optimizer.momentum: optimizer 'adamw' takes no option")
    assert "betas" in problem  # its options are listed


# What README "Quick start" users try first: digits_quick with a bigger backbone or another
# optimiser. One trains a step here (a small batch); every pair of the issue is slow.
@pytest.mark.parametrize("backbone, optimizer", [("resnet18", "adamw")])
def test_digits_quick_trains_a_step_with_another_backbone_and_optimiser(
    composer, backbone, optimizer
):
    cfg = composer(
        "pretrain",
        "experiment=digits_quick",
        f"backbone={backbone}",
        f"optimizer={optimizer}",
        "data.batch_size=16",
        "trainer.fast_dev_run=true",
        "callbacks.progress_bar=null",
    )
    metrics = run(cfg)
    assert math.isfinite(metrics["train/loss_step"])


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet34", "resnet50", "resnet50_w2"])
@pytest.mark.parametrize("optimizer", ["lars", "sgd", "adamw", "nadam"])
def test_python_train_py_digits_quick_with_each_backbone_and_optimiser(
    tmp_path, backbone, optimizer
):
    result = run_script(
        "train.py",
        [
            "experiment=digits_quick",
            f"backbone={backbone}",
            f"optimizer={optimizer}",
            "trainer.fast_dev_run=true",
            "callbacks.progress_bar=null",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.output_dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
