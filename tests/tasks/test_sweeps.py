"""Sweeps and cluster presets: multiruns name their jobs by overrides, Optuna, DDP, SLURM."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, FAST_OVERRIDES, compose_config, run_script

TINY_RUN = [*FAST_OVERRIDES, "trainer.max_epochs=1"]


def job_folders(sweep_dir):
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit())


def test_multirun_gives_each_job_a_folder_named_by_its_overrides(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        ["-m", *TINY_RUN, "model.temperature=0.1,0.5", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_folders(sweep)
    assert [job.name.split("_", 1)[0] for job in jobs] == ["0", "1"]
    for job, temperature in zip(jobs, ["0.1", "0.5"], strict=True):
        # Named by the overrides (sorted by Hydra), hydra.* ones left out.
        assert f"model.temperature={temperature}" in job.name.split(",")
        assert "data=fake" in job.name and "hydra" not in job.name
        assert (job / "checkpoints" / "last.ckpt").exists()
        # TensorBoard pointed at the sweep folder lists the run under the job's name.
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))
        assert "train/loss_epoch" in json.loads((job / "metrics.json").read_text())
        saved = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert saved.model.temperature == float(temperature)


def compose_with_hydra(overrides, tmp_path):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "pretrain",
            overrides=[*overrides, f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}"],
            return_hydra_config=True,
        )


def test_ddp_preset_synchronises_batch_norm_and_can_switch_it_off(tmp_path):
    cfg = compose_config(["trainer=ddp"], tmp_path)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm is True
    assert (
        compose_config(["trainer=ddp", "trainer.sync_batchnorm=false"], tmp_path).trainer[
            "sync_batchnorm"
        ]
        is False
    )
    nodes = compose_config(["trainer=ddp_multinode", "trainer.num_nodes=4"], tmp_path).trainer
    assert nodes.num_nodes == 4 and nodes.sync_batchnorm is True


def test_slurm_launcher_takes_nodes_and_tasks_from_the_trainer(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_with_hydra(
        ["hydra/launcher=slurm", "trainer=ddp_multinode", "trainer.num_nodes=3"], tmp_path
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["nodes"] == 3 and launcher["tasks_per_node"] == launcher["gpus_per_node"] == 4


def test_optuna_preset_maximises_the_knn_accuracy(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_with_hydra(["hparams_search=optuna"], tmp_path)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/knn_acc"
    assert "model.temperature" in cfg.hydra.sweeper.params


@pytest.mark.slow
def test_optuna_sweep_runs_two_trials(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        [
            *TINY_RUN,
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_folders(sweep)
    assert len(jobs) == 2
    for job in jobs:
        assert "model.temperature=" in job.name
        assert (job / "checkpoints" / "last.ckpt").exists()
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    accuracies = [json.loads((j / "metrics.json").read_text())["val/knn_acc"] for j in jobs]
    assert results.best_value == pytest.approx(max(accuracies))


@pytest.mark.slow
def test_train_py_under_ddp_on_two_cpu_processes(tmp_path):
    run_dir = tmp_path / "run"
    ddp_cpu = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.sync_batchnorm=false",
    ]
    args = [*TINY_RUN, *ddp_cpu, f"hydra.run.dir={run_dir}"]
    result = run_script("train.py", args, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 4  # 64 images, global batch 16 (8 a process)
    # A global batch that does not divide over the processes stops before training.
    result = run_script(
        "train.py", [*args, "data.batch_size=15", f"hydra.run.dir={tmp_path / 'odd'}"], cwd=tmp_path
    )
    assert result.returncode == 2 and "data.batch_size=15" in result.stderr
