"""Config checks run before any work starts, so a long run never dies on a typo after an hour.

Hydra's struct mode already rejects misspelled keys; these checks reject values that compose
but cannot work. Every problem found is reported at once, each line naming the key, the value
and what is allowed, as one :class:`~simclr.errors.ConfigError`.

A check runs only where its key exists, so the same function serves the pre-training config
and other configs built from the same groups (fine-tuning, with its ``label_fraction``).
"""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Real
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from simclr.callbacks.safeguards import NON_FINITE_ACTIONS
from simclr.data.pretraining import DATASETS
from simclr.errors import ConfigError
from simclr.memory.activation_checkpointing import is_checkpointing_mode
from simclr.models.backbones import BACKBONES, WIDE_RESNET_WIDTHS
from simclr.optim.optimizers import OPTIMIZERS

_MISSING = object()


def _get(cfg: DictConfig, key: str):
    """The value at dotted ``key`` (interpolations resolved), or ``_MISSING`` if absent."""
    return OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _walk(node, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Every ``(dotted key, value)`` leaf below ``node`` (Hydra's own node excluded)."""
    if isinstance(node, DictConfig):
        for key in node:
            if not prefix and key == "hydra":
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            # Leave unresolvable interpolations (e.g. ${hydra:...} outside a Hydra run) alone.
            try:
                child = node[key]
            except Exception:  # any resolution failure: not checkable here
                continue
            yield from _walk(child, path)
    elif isinstance(node, ListConfig):
        for index, child in enumerate(node):
            yield from _walk(child, f"{prefix}[{index}]")
    else:
        yield prefix, node


def world_size(cfg: DictConfig) -> int | None:
    """Devices x nodes as ``cfg.trainer`` asks, or None where only Lightning can tell ("auto",
    -1: every visible device)."""
    devices = _get(cfg, "trainer.devices")
    nodes = _get(cfg, "trainer.num_nodes")
    nodes = nodes if _is_number(nodes) and nodes >= 1 else 1
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:
        devices = [d for d in devices.split(",") if d.strip()]
    if isinstance(devices, (list, ListConfig)):
        return len(devices) * int(nodes)
    if _is_number(devices) and devices >= 1:
        return int(devices) * int(nodes)
    return None


def config_problems(cfg: DictConfig) -> list[str]:
    """Every problem of ``cfg`` as one line naming the key, the value and what is allowed."""
    problems: list[str] = []

    def check(key: str, ok, allowed: str) -> None:
        value = _get(cfg, key)
        if value is not _MISSING and value is not None and not ok(value):
            problems.append(f"{key}={value!r}: must be {allowed}")

    def one_of(key: str, valid) -> None:
        names = ", ".join(sorted(valid))
        check(key, lambda v: v in valid, f"one of: {names}")

    positive = lambda v: _is_number(v) and v > 0  # noqa: E731
    non_negative = lambda v: _is_number(v) and v >= 0  # noqa: E731

    check("model.temperature", positive, "a number > 0 (0.1 to 0.5 is usual)")
    check("model.num_views", lambda v: _is_number(v) and int(v) == v and v >= 2, "an integer >= 2")
    check("model.activation_checkpointing", is_checkpointing_mode, "auto, true or false")
    one_of("backbone.name", BACKBONES)
    one_of("data.name", DATASETS)
    one_of("optimizer.name", OPTIMIZERS)
    if _get(cfg, "backbone.name") == "wide_resnet50":
        widths = ", ".join(map(str, WIDE_RESNET_WIDTHS))
        check("backbone.width", lambda v: v in WIDE_RESNET_WIDTHS, f"one of {widths} (x1/x2/x4)")
    check("optimizer.lr", positive, "a number > 0")
    check("optimizer.weight_decay", non_negative, "a number >= 0")
    check("scheduler.min_lr_ratio", lambda v: _is_number(v) and 0 <= v <= 1, "in [0, 1]")
    check(
        "trainer.max_epochs",
        lambda v: _is_number(v) and (v >= 0 or v == -1),
        "an integer >= 0 (or -1: no limit, stop at trainer.max_steps)",
    )
    check("data.batch_size", lambda v: _is_number(v) and v >= 1, "an integer >= 1")
    probability = lambda v: _is_number(v) and 0 <= v <= 1  # noqa: E731
    for name in ("color_prob", "grayscale_prob", "blur_prob", "flip_prob", "rotation_prob"):
        check(f"data.augment.{name}", probability, "a probability in [0, 1]")
    check("data.augment.rotation_degrees", non_negative, "a number of degrees >= 0")
    check("data.eval_crop_fraction", lambda v: _is_number(v) and 0 < v <= 1, "in (0, 1]")
    one_of("callbacks.non_finite.action", NON_FINITE_ACTIONS)

    # The global batch is split evenly over the devices (SimCLRDataModule).
    batch, devices = _get(cfg, "data.batch_size"), world_size(cfg)
    if devices and _is_number(batch) and batch >= 1 and batch % devices:
        problems.append(
            f"data.batch_size={batch}: the global batch must divide by the {devices} devices "
            f"(trainer.devices x trainer.num_nodes); use a multiple of {devices}"
        )

    # Generic rules wherever such keys live (fine-tuning, monitors, later options).
    checked = {"optimizer.lr", "trainer.max_epochs"}
    for key, value in _walk(cfg):
        name = key.rsplit(".", 1)[-1]
        if key in checked or not _is_number(value):
            continue
        if name == "label_fraction" and not 0 < value <= 1:
            problems.append(f"{key}={value!r}: must be in (0, 1] (1 = every label)")
        elif (name == "lr" or name.endswith("_lr") or "learning_rate" in name) and value < 0:
            problems.append(f"{key}={value!r}: a learning rate must be >= 0")
        elif name.endswith("epochs") and value < 0:
            problems.append(f"{key}={value!r}: a number of epochs must be >= 0")
    return problems


def validate_config(cfg: DictConfig) -> None:
    """Raise one :class:`ConfigError` listing every problem of ``cfg``; return if none."""
    problems = config_problems(cfg)
    if problems:
        lines = "\n  ".join(problems)
        raise ConfigError(f"invalid config ({len(problems)} problem(s)):\n  {lines}")


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from, as ``cfg.ckpt_path`` names it.

    - ``null``: none (a fresh run).
    - ``last``: the newest ``last.ckpt`` (by modification time) of the earlier runs of this
      task, ``${paths.log_dir}/${task_name}/runs/*/checkpoints/last.ckpt``.
    - a run folder: its ``checkpoints/last.ckpt``.
    - a file path: that file.

    A path that does not exist, or ``last`` with no earlier run, is a :class:`ConfigError`.
    """
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        runs = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
        found = [p for p in runs.glob("*/checkpoints/last.ckpt") if p.is_file()]
        if not found:
            raise ConfigError(
                f"ckpt_path=last: no earlier run of task {cfg.task_name!r} left a checkpoint "
                f"({runs}/*/checkpoints/last.ckpt matches nothing); give ckpt_path=<path to a "
                ".ckpt> or leave ckpt_path=null to start afresh"
            )
        return str(max(found, key=lambda p: p.stat().st_mtime))
    path = Path(str(ckpt_path)).expanduser()
    if path.is_dir() and (path / "checkpoints" / "last.ckpt").is_file():
        return str(path / "checkpoints" / "last.ckpt")
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path}: no such checkpoint file; give the path of a .ckpt (e.g. "
            "logs/pretrain/runs/<time>/checkpoints/last.ckpt), a run folder, 'last' for the "
            "newest run's last.ckpt, or null to start afresh"
        )
    return str(path)
