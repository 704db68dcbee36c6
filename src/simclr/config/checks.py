"""Config checks run before any work starts, so a long run never dies on a typo after an hour.

Hydra's struct mode already rejects misspelled keys; these checks reject values that compose
but cannot work. Every problem found is reported at once, each line naming the key, the value
and what is allowed, as one :class:`~simclr.errors.ConfigError`.

A check runs only where its key exists, so the same function serves the pre-training config
and other configs built from the same groups (fine-tuning, with its ``label_fraction``).

The checks are not written here but asked for: every component states the rules of its own
options (:func:`simclr.rules.state`, and a registry entry's ``rules``), so a new backbone, data
set or optimiser brings its rules with it. Importing the component packages below files them.
"""

from __future__ import annotations

from collections.abc import Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

import simclr.callbacks
import simclr.data
import simclr.models
import simclr.optim  # noqa: F401  (these four imports state their components' rules)
from simclr import rules
from simclr.callbacks.feature_maps import EXTRA_OF_PROJECTION, PROJECTIONS
from simclr.errors import ConfigError
from simclr.extras import EXTRA_OF_TARGET
from simclr.registry import Registry
from simclr.rules import Check, Joint, Rule, is_number

_MISSING = object()
NOT_GIVEN = "???"  # OmegaConf's mark of a mandatory value (``pretrained_ckpt: ???``)

# The rules of the options that belong to the run rather than to one component.
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
    Rule("scheduler.min_lr_ratio", rules.probability, "in [0, 1]"),
    Rule(
        "trainer.max_epochs",
        lambda v: is_number(v) and (v >= 0 or v == -1),
        "an integer >= 0 (or -1: no limit, stop at trainer.max_steps)",
    ),
]


def _get(cfg: DictConfig, key: str):
    """The value at dotted ``key`` (interpolations resolved), or ``_MISSING`` if absent."""
    return OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)


def _walk(node, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Every ``(dotted key, value)`` leaf below ``node`` (Hydra's own node excluded); a
    mandatory value not given is :data:`NOT_GIVEN`."""
    if isinstance(node, DictConfig):
        for key in node:
            if not prefix and key == "hydra":
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            if OmegaConf.is_missing(node, key):
                yield path, NOT_GIVEN
                continue
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


def applicable_checks(cfg: DictConfig) -> list[Check]:
    """The checks that apply to ``cfg``: the run's rules, every check a component stated, and
    the rules of each registry entry that ``cfg`` names (its backbone's, its optimiser's ...)."""
    checks: list[Check] = [*RULES, *rules.stated()]
    for registry in [check for check in checks if isinstance(check, Registry)]:
        name = _get(cfg, registry.key)
        if name in registry:
            checks += registry.rules_of(name)
    return checks


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
    checks = applicable_checks(cfg)
    for rule in checks:
        value = _get(cfg, rule.key)
        if isinstance(rule, Joint):
            if value is not _MISSING:
                others = {key.rsplit(".", 1)[-1]: _get(cfg, key) for key in rule.others}
                named = {name: None if v is _MISSING else v for name, v in others.items()}
                problems.append(rule.problem(value, **named))
            continue
        if value is not _MISSING and value is not None:
            # A component that checks several options of its node lists one line for each.
            many = getattr(rule, "problems", None)
            problems += many(value) if many else [rule.problem(value)]

    problems += optional_package_problems(cfg)

    # The global batch is split evenly over the devices (SimCLRDataModule).
    batch, devices = _get(cfg, "data.batch_size"), configured_world_size(cfg)
    if devices and rules.BATCH_SIZE.ok(batch):
        problems.append(rules.batch_division_problem(batch, devices))

    # Mandatory values not given; generic rules wherever such keys live (fine-tuning,
    # monitors, later options).
    checked = {rule.key for rule in checks}
    allowed = {check.key: check.allowed for check in checks if isinstance(check, Rule)}
    for key, value in _walk(cfg):
        if value is NOT_GIVEN:
            wanted = allowed.get(key, f"given: add {key}=<value>")
            problems.append(f"{key} is not set: must be {wanted}")
            continue
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
