"""The optimisers a config can name (``optimizer.name``), one registry, and how a module's
parameters are grouped and its learning rate scaled:

- LARS (:mod:`simclr.optim.lars`), SGD, AdamW and NAdam, every one with biases, normalisation
  layers, position embeddings and class tokens excluded from weight decay (and, for LARS, from
  the adaptation): :func:`no_decay_names`.
- Learning-rate scaling with the global batch B: ``linear`` (base x B / 256), ``sqrt``
  (base x sqrt(B)) or ``none``.
- :func:`lightning_optimization`: a LightningModule's ``configure_optimizers`` answer, the
  optimiser and its warm-up + cosine schedule (:mod:`simclr.optim.schedules`).
"""

from __future__ import annotations

import fnmatch
import inspect
import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.optim import Optimizer

from simclr.errors import ConfigError
from simclr.optim.lars import LARS
from simclr.optim.schedules import build_scheduler
from simclr.registry import Registry
from simclr.rules import LEARNING_RATE, WEIGHT_DECAY, KnownOptions, state

if TYPE_CHECKING:
    import lightning as L


def _options_rule(name: str, optimizer_class: type[Optimizer]) -> list[KnownOptions]:
    """The config checks' rule of the ``optimizer`` node when it names ``name``: the options of
    :func:`build_optimizer` and the optimiser's own keyword arguments."""
    taken = [p for p in inspect.signature(optimizer_class).parameters if p != "params"]
    options = ("name", "lr", "lr_scaling", "weight_decay")
    return [KnownOptions("optimizer", f"optimizer {name!r}", (*options, *taken))]


OPTIMIZERS: Registry[type[Optimizer]] = state(
    Registry("optimizer", "optimizer.name", entry_rules=_options_rule)
)
OPTIMIZERS.register("lars")(LARS)
OPTIMIZERS.register("sgd")(torch.optim.SGD)
OPTIMIZERS.register("adamw")(torch.optim.AdamW)
OPTIMIZERS.register("nadam")(torch.optim.NAdam)


def no_decay_names(model: nn.Module) -> set[str]:
    """Names (in ``model.named_parameters()``) of the parameters that get neither weight decay
    nor LARS's adaptation: the one rule for every backbone.

    - every parameter with fewer than 2 dimensions: biases and the scales and shifts of
      normalisation layers (BatchNorm, LayerNorm, GroupNorm), and timm's LayerScale factors,
      as SimCLR excludes biases and BatchNorm (and timm's own optimiser factory, 1-D
      parameters);
    - the parameters a submodule names in its ``no_weight_decay()`` (timm's convention, names
      relative to that submodule, ``*`` wildcards allowed): position embeddings and the class,
      register and distillation tokens of ViTs, Swin's relative position bias tables. They are
      additive offsets, not weights that scale an input, so shrinking them towards zero has no
      regularising sense (and their norm says nothing about a step's relative size).
    """
    names = {name for name, param in model.named_parameters() if param.ndim < 2}
    for prefix, module in model.named_modules():
        declared = getattr(module, "no_weight_decay", None)
        if not callable(declared):
            continue
        patterns = set(declared())
        for name, _ in module.named_parameters():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                names.add(f"{prefix}.{name}" if prefix else name)
    return names


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights (decayed, adapted by LARS) and the parameters of
    :func:`no_decay_names` (neither)."""
    excluded_names = no_decay_names(model)
    decayed, excluded = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (excluded if name in excluded_names else decayed).append(param)
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": excluded, "weight_decay": 0.0, "lars_exclude": True},
    ]


def scaled_learning_rate(base_lr: float, batch_size: int, scaling: str) -> float:
    """The paper's learning-rate scaling with the global batch (appendix B.1)."""
    rules = {
        "linear": lambda: base_lr * batch_size / 256,
        "sqrt": lambda: base_lr * math.sqrt(batch_size),
        "none": lambda: base_lr,
    }
    if scaling not in rules:
        raise ConfigError(f"unknown optimizer.lr_scaling {scaling!r}; valid: {', '.join(rules)}")
    return rules[scaling]()


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    batch_size: int,
    lr_scaling: str = "none",
    weight_decay: float = 0.0,
    groups: list[dict] | None = None,
    **options,
) -> Optimizer:
    """The optimiser named ``name`` over ``model``'s parameter groups, at the scaled rate.

    ``options`` are the optimiser's own keyword arguments (momentum, betas, ...). ``groups``
    replaces :func:`parameter_groups`' (a module that groups its parameters its own way).
    """
    LEARNING_RATE.check(lr)
    WEIGHT_DECAY.check(weight_decay)
    optimizer_class = OPTIMIZERS[name]
    groups = parameter_groups(model, weight_decay) if groups is None else groups
    if optimizer_class is not LARS:
        for group in groups:
            group.pop("lars_exclude", None)
    peak_lr = scaled_learning_rate(lr, batch_size, lr_scaling)
    return optimizer_class(groups, lr=peak_lr, **options)


def lightning_optimization(
    module: L.LightningModule,
    batch_size: int,
    optimizer: dict,
    scheduler: dict,
    groups: list[dict] | None = None,
) -> dict:
    """``configure_optimizers``' answer for ``module``: the optimiser over its parameter groups
    (``groups``, or :func:`parameter_groups`') at the rate scaled for ``batch_size``, and the
    warm-up + cosine schedule stepped at every optimiser step, its length from the trainer's
    estimated stepping batches."""
    built = build_optimizer(module, batch_size=batch_size, groups=groups, **optimizer)
    total_steps = int(module.trainer.estimated_stepping_batches)
    # Known once estimated_stepping_batches has set up the training loader.
    steps_per_epoch = max(
        1, module.trainer.num_training_batches // module.trainer.accumulate_grad_batches
    )
    schedule = build_scheduler(built, total_steps, steps_per_epoch, **scheduler)
    return {
        "optimizer": built,
        "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1},
    }
