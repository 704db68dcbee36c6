"""Optional features and the pip extra that installs each (``pyproject.toml``'s
``[project.optional-dependencies]``).

A config that chooses such a feature without its package is refused before any work, by the
config checks (:mod:`simclr.config.checks`), with the command that installs it:
``logger.wandb: needs the wandb package; install it with pip install 'simclr[wandb]'``.
Code that uses the package calls :meth:`Extra.require` first, for the same message where no
config was checked (a function called directly).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from simclr.errors import ConfigError


@dataclass(frozen=True)
class Extra:
    """A package the core install lacks: its import name and the extra that installs it."""

    module: str
    extra: str

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def problem(self, key: str) -> str | None:
        """Why ``key`` (the config entry that needs the package) cannot run here, or None."""
        if self.installed():
            return None
        return (
            f"{key}: needs the {self.module} package; install it with "
            f"pip install 'simclr[{self.extra}]'"
        )

    def require(self, key: str) -> None:
        """A :class:`ConfigError` naming the extra if the package is missing."""
        problem = self.problem(key)
        if problem:
            raise ConfigError(problem)


WANDB = Extra("wandb", "wandb")
MLFLOW = Extra("mlflow", "mlflow")
UMAP = Extra("umap", "umap")
LITDATA = Extra("litdata", "streaming")
# python -m simclr.embed --out X.parquet.
PARQUET = Extra("pyarrow", "parquet")
# python -m simclr.export --format onnx: the format, torch's exporter and the checking runtime.
ONNX_EXPORT = tuple(Extra(module, "export") for module in ("onnx", "onnxscript", "onnxruntime"))

# The ``_target_`` of a config node -> the extra it needs (the loggers of configs/logger/).
EXTRA_OF_TARGET: dict[str, Extra] = {
    "lightning.pytorch.loggers.WandbLogger": WANDB,
    "simclr.loggers.mlflow_logger": MLFLOW,
}
