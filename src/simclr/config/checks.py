"""Config checks run before any work starts, so a long run never dies on a typo after an hour.

Hydra's struct mode already rejects misspelled keys; these checks reject values that compose
but cannot work. Every problem found is reported at once, each line naming the key, the value
and what is allowed, as one :class:`~simclr.errors.ConfigError`.

A check runs only where its key exists, so the same function serves the pre-training config
and other configs built from the same groups (fine-tuning, with its ``label_fraction``).
"""

from __future__ import annotations

from collections.abc import Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

from simclr import rules
from simclr.callbacks.feature_maps import EXTRA_OF_PROJECTION, PROJECTIONS
from simclr.callbacks.pictures import MAP_SIZE, MAX_POINTS
from simclr.callbacks.safeguards import NON_FINITE_ACTION
from simclr.data.label_subsets import LABEL_SUBSETS
from simclr.data.sources import DATASETS
from simclr.errors import ConfigError
from simclr.extras import EXTRA_OF_TARGET
from simclr.models.backbones import BACKBONES, WIDE_RESNET_WIDTH, wide_resnet50
from simclr.models.finetune import CLASSIFIER_GROUPS, MODES
from simclr.models.head_layers import FROM_HEAD_LAYER
from simclr.models.resnet_v2 import SK_RATIO, V2_BUILDERS, V2_WIDTH
from simclr.models.timm_backbones import TIMM_MODEL, timm_backbone
from simclr.optim import OPTIMIZERS
from simclr.rules import Rule, is_number

_MISSING = object()

# Each rule checked at its own key, where the config has it.
RULES: list[Rule] = [
    rules.TEMPERATURE,
    rules.NUM_VIEWS,
    rules.MICRO_BATCH_SIZE,
    rules.ACTIVATION_CHECKPOINTING,
    rules.LEARNING_RATE,
    rules.WEIGHT_DECAY,
    rules.BATCH_SIZE,
    rules.NUM_WORKERS,
    rules.EVAL_CROP_FRACTION,
    rules.VIEW_PIPELINE,
    NON_FINITE_ACTION,
    FROM_HEAD_LAYER,
    MAP_SIZE,
    MAX_POINTS,
    Rule("scheduler.min_lr_ratio", rules.probability, "in [0, 1]"),
    Rule(
        "trainer.max_epochs",
        lambda v: is_number(v) and (v >= 0 or v == -1),
        "an integer >= 0 (or -1: no limit, stop at trainer.max_steps)",
    ),
    *(
        Rule(f"data.augment.{name}", rules.probability, "a probability in [0, 1]")
        for name in ("color_prob", "grayscale_prob", "blur_prob", "flip_prob", "rotation_prob")
    ),
    Rule("data.augment.rotation_degrees", rules.non_negative, "a number of degrees >= 0"),
]
# The config values that name a registry entry.
NAMES = [BACKBONES, DATASETS, OPTIMIZERS, MODES, CLASSIFIER_GROUPS, LABEL_SUBSETS]


def _get(cfg: DictConfig, key: str):
    """The value at dotted ``key`` (interpolations resolved), or ``_MISSING`` if absent."""
    return OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)


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


def configured_world_size(cfg: DictConfig) -> int | None:
    """Devices x nodes as ``cfg.trainer`` asks, or None where only Lightning can tell ("auto",
    -1: every visible device)."""
    devices = _get(cfg, "trainer.devices")
    nodes = _get(cfg, "trainer.num_nodes")
    nodes = nodes if is_number(nodes) and nodes >= 1 else 1
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:
        devices = [d for d in devices.split(",") if d.strip()]
    if isinstance(devices, (list, ListConfig)):
        return len(devices) * int(nodes)
    if is_number(devices) and devices >= 1:
        return int(devices) * int(nodes)
    return None


def _generic_rule(key: str) -> Rule | None:
    """The rule for a key wherever it lives, by its last part (fine-tuning's label_fraction,
    a monitor's lr, any number of epochs)."""
    name = key.rsplit(".", 1)[-1]
    if name == "label_fraction":
        return rules.LABEL_FRACTION
    if name == "lr" or name.endswith("_lr") or "learning_rate" in name:
        return rules.ANY_LEARNING_RATE
    if name.endswith("epochs"):
        return rules.EPOCHS
    return None


def optional_package_problems(cfg: DictConfig) -> list[str]:
    """The feature maps misnamed, and the optional packages that the chosen loggers and
    feature maps need but that are not installed (each with the extra to install)."""
    problems = []
    for group in ("logger", "callbacks"):
        nodes = _get(cfg, group)
        for name, node in nodes.items() if isinstance(nodes, DictConfig) else ():
            target = node.get("_target_") if isinstance(node, DictConfig) else None
            extra = EXTRA_OF_TARGET.get(target)
            problems.append(extra.problem(f"{group}.{name}") if extra else None)
    maps = _get(cfg, PROJECTIONS.key)  # a list of names, or one name
    maps = [maps] if isinstance(maps, str) else maps if isinstance(maps, ListConfig) else []
    for name in maps:
        problems.append(PROJECTIONS.problem(name))
        if name in EXTRA_OF_PROJECTION:
            problems.append(EXTRA_OF_PROJECTION[name].problem(f"{PROJECTIONS.key}={name}"))
    return problems


def config_problems(cfg: DictConfig) -> list[str]:
    """Every problem of ``cfg`` as one line naming the key, the value and what is allowed."""
    problems: list[str] = []

    def check(rule: Rule, key: str | None = None) -> None:
        value = _get(cfg, key or rule.key)
        if value is not _MISSING and value is not None:
            problems.append(rule.problem(value, key))

    for rule in RULES:
        check(rule)
    for registry in NAMES:
        name = _get(cfg, registry.key)
        if name is not _MISSING and name is not None:
            problems.append(registry.problem(name))
    backbone = _get(cfg, "backbone.name")
    if backbone in BACKBONES and BACKBONES[backbone] is wide_resnet50:
        check(WIDE_RESNET_WIDTH)
    if backbone in BACKBONES and BACKBONES[backbone] in V2_BUILDERS:
        check(V2_WIDTH)
        check(SK_RATIO)
    if backbone in BACKBONES and BACKBONES[backbone] is timm_backbone:
        check(TIMM_MODEL)

    problems += optional_package_problems(cfg)

    # The global batch is split evenly over the devices (SimCLRDataModule).
    batch, devices = _get(cfg, "data.batch_size"), configured_world_size(cfg)
    if devices and rules.BATCH_SIZE.ok(batch):
        problems.append(rules.batch_division_problem(batch, devices))

    # Generic rules wherever such keys live (fine-tuning, monitors, later options).
    checked = {rule.key for rule in RULES}
    for key, value in _walk(cfg):
        rule = _generic_rule(key)
        if rule is not None and key not in checked and is_number(value):
            problems.append(rule.problem(value, key))
    return [problem for problem in problems if problem]


def validate_config(cfg: DictConfig) -> None:
    """Raise one :class:`ConfigError` listing every problem of ``cfg``; return if none."""
    problems = config_problems(cfg)
    if problems:
        lines = "\n  ".join(problems)
        raise ConfigError(f"invalid config ({len(problems)} problem(s)):\n  {lines}")
