"""Every config option composes, and a misspelled key fails before any work starts."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, ROOT, compose_config, run_script

GROUPS = [
    "data",
    "data/augment",
    "data/loader",
    "backbone",
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "callbacks",
    "preemption",
    "logger",
    "paths",
    "experiment",
    "hparams_search",
    "hydra/launcher",
]

# Groups whose options need an optional Hydra plugin (pyproject extras optuna, slurm); their
# options are skipped where the plugin is not installed.
PLUGIN_OF_GROUP = {
    "hparams_search": "hydra_plugins.hydra_optuna_sweeper",
    "hydra/launcher": "hydra_plugins.hydra_submitit_launcher",
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS for o in options(g)], ids=lambda x: str(x)
)
def test_every_option_composes_and_resolves(group, option, tmp_path):
    if group in PLUGIN_OF_GROUP:
        pytest.importorskip(PLUGIN_OF_GROUP[group])
    cfg = compose_config([f"{group}={option}"], tmp_path)
    # Everything but Hydra's own node must resolve to plain values.
    OmegaConf.to_container(cfg, resolve=True)
    assert OmegaConf.is_struct(cfg)


def test_groups_cover_every_config_folder():
    folders = {str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*") if p.is_dir()}
    # mode and evaluation: groups of finetune.yaml only, composed in
    # tasks/test_finetune_task.py and tasks/test_reproduce.py.
    assert folders - {"hydra", "mode", "evaluation"} <= set(GROUPS)


def test_wide_resnet_presets_set_the_width(tmp_path):
    for width in (1, 2, 4):
        cfg = compose_config([f"backbone=resnet50_w{width}"], tmp_path)
        assert cfg.backbone.name == f"resnet50_w{width}" and cfg.backbone.width == width


def test_large_augmentation_preset_adds_blur(tmp_path):
    cfg = compose_config(["data/augment=large"], tmp_path)
    assert cfg.data.augment.blur_prob == 0.5 and cfg.data.augment.color_strength == 1.0
    assert compose_config([], tmp_path).data.augment.blur_prob == 0.0


@pytest.mark.parametrize(
    "override,name",
    [
        ("model.temprature=0.2", "temprature"),
        ("optimiser=lars", "optimiser"),
        ("data.batchsize=64", "batchsize"),
    ],
)
def test_misspelled_override_fails_and_names_the_key(override, name, tmp_path):
    with pytest.raises(ConfigCompositionException, match=name):
        compose_config([override], tmp_path)


def test_train_py_rejects_a_typo_before_training(tmp_path):
    result = run_script("train.py", ["model.temprature=0.2"], cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "temprature" in result.stderr
    assert not (tmp_path / "logs").exists()  # no run folder, no training
    assert (ROOT / "train.py").exists()
