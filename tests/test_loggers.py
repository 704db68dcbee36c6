"""The loggers of configs/logger/: W&B (offline) and MLflow (a local file store) keep what a
run logged, pictures included; any set of loggers composes; a missing package names its
extra before any work."""

import json
import struct
import sys
from pathlib import Path

import pytest

from conftest import FAST_OVERRIDES, compose_config
from simclr.config import validate_config
from simclr.errors import ConfigError
from simclr.tasks.pretrain import run

ONE_EPOCH = [*FAST_OVERRIDES, "trainer.max_epochs=1", "trainer.log_every_n_steps=1"]


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's ``run-<id>.wandb`` file.

    wandb (0.2x) no longer ships a Python reader of its files (the Go core writes them), so
    the container is read here: a 7-byte header (``:W&B``, magic, version), then LevelDB-log
    chunks in 32 KiB blocks (CRC, length, type: full, first, middle, last), each record a
    ``wandb_internal_pb2.Record``, the library's own message."""
    from wandb.proto import wandb_internal_pb2

    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B", "not a wandb run file"
    records, pending, pos = [], b"", header
    while pos + header <= len(data):
        if block - pos % block < header:  # the block's tail is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        pending += data[pos + header : pos + header + length]
        pos += header + length
        if kind in (1, 4) and pending:  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_history(records: list) -> list[dict]:
    """The logged rows (``wandb.log`` calls): key -> value."""
    return [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in r.history.item
        }
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Path:
    """W&B offline, every folder it writes in ``tmp_path``, and no server to reach: a
    request would go to a closed local port, never to the internet."""
    home = tmp_path / "wandb_home"
    for variable in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(home / variable.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return home


def test_wandb_offline_run_keeps_the_metrics_config_and_pictures(offline_wandb, tmp_path):
    import wandb

    run_dir = tmp_path / "run"
    metrics = run(compose_config([*ONE_EPOCH, "logger=[csv,wandb]"], run_dir))
    assert wandb.run is None  # ended, so a next run in this process gets its own

    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    history = wandb_history(records)
    knn = [row["val/knn_acc"] for row in history if "val/knn_acc" in row]
    assert knn == [pytest.approx(metrics["val/knn_acc"])]
    losses = [row["train/loss_step"] for row in history if "train/loss_step" in row]
    assert len(losses) == 4  # 64 fake images, batches of 16, every step logged
    config = {
        item.key: json.loads(item.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for item in r.config.update
    }
    assert config["temperature"] == 0.5 and config["backbone"]["name"] == "resnet18_slim"
    assert any(r.WhichOneof("record_type") == "exit" for r in records)
    pictures = {key.split("/filenames")[0] for row in history for key in row if "filenames" in key}
    assert pictures == {"views/pairs", "val/feature_map_pca"}
    assert list(run_file.parent.glob("files/media/images/val/feature_map_pca_*.png"))
    # Nothing was written beside the run folder and the test's wandb folders.
    assert {p.name for p in tmp_path.iterdir()} == {"run", "wandb_home"}


def test_mlflow_file_store_keeps_the_metrics_parameters_and_pictures(tmp_path, monkeypatch):
    # The logger consents to MLflow's file store in the environment; restored after the test.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    metrics = run(compose_config([*ONE_EPOCH, "logger=mlflow"], tmp_path))

    store = tmp_path / "logs" / "mlruns"  # ${paths.log_dir}/mlruns
    (run_folder,) = (p.parent for p in store.glob("*/*/meta.yaml"))
    experiment = (run_folder.parent / "meta.yaml").read_text()
    assert "name: pretrain" in experiment  # one experiment per task
    assert "status: 3" in (run_folder / "meta.yaml").read_text()  # FINISHED
    # Each metric file holds "<timestamp> <value> <step>" lines.
    knn = (run_folder / "metrics" / "val" / "knn_acc").read_text().split()
    assert float(knn[1]) == pytest.approx(metrics["val/knn_acc"])
    steps = (run_folder / "metrics" / "train" / "loss_step").read_text().splitlines()
    assert len(steps) == 4
    assert (run_folder / "params" / "temperature").read_text() == "0.5"
    assert (run_folder / "tags" / "run_dir").read_text() == str(tmp_path)
    images = {p.name.split("+")[0] for p in (run_folder / "artifacts" / "images").glob("*.png")}
    assert images == {"views~pairs", "val~feature_map_pca"}


def test_any_set_of_loggers_composes_from_the_command_line(tmp_path):
    cfg = compose_config(["logger=[tensorboard,wandb,mlflow]"], tmp_path)
    assert set(cfg.logger) == {"tensorboard", "wandb", "mlflow"}
    assert set(compose_config(["logger=many"], tmp_path).logger) == {"tensorboard", "csv"}
    assert cfg.logger.wandb.save_dir == str(tmp_path)
    assert cfg.logger.mlflow.tracking_uri == f"file:{tmp_path}/logs/mlruns"


@pytest.mark.parametrize("logger, package", [("wandb", "wandb"), ("mlflow", "mlflow")])
def test_a_missing_logger_package_names_its_extra_before_any_work(
    logger, package, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    cfg = compose_config([*FAST_OVERRIDES, f"logger=[csv,{logger}]"], tmp_path)
    message = rf"logger.{logger}: needs the {package} package; .* 'simclr\[{logger}\]'"
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not (tmp_path / "csv").exists()  # stopped before the trainer was built
