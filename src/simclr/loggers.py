"""What the loggers of ``configs/logger/`` need beyond Lightning's classes: the MLflow logger
on a local file store, pictures for every logger that takes images, and closing each run.

The loggers themselves are Lightning's (TensorBoardLogger, CSVLogger, WandbLogger,
MLFlowLogger), built by Hydra from their ``_target_`` nodes (``tasks.common.build_trainer``);
any set of them is chosen with ``logger=[tensorboard,wandb,mlflow]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from lightning.pytorch.loggers import Logger, MLFlowLogger, WandbLogger
from torch import Tensor
from torchvision.transforms.functional import to_pil_image

from simclr.extras import MLFLOW

ImageWriter = Callable[[str, Tensor, int], None]


def mlflow_logger(tracking_uri: str, **kwargs) -> MLFlowLogger:
    """Lightning's :class:`MLFlowLogger` (``kwargs`` are its arguments) on ``tracking_uri``.

    MLflow 3 keeps its file store (``file:<folder>``, this project's default: no server, no
    database, nothing beyond ``mlflow-skinny``) in maintenance mode and refuses to open one
    unless ``MLFLOW_ALLOW_FILE_STORE=true``; choosing ``logger=mlflow`` with a ``file:`` URI
    is taken as that consent (an explicit ``MLFLOW_ALLOW_FILE_STORE`` in the environment
    wins). A database (``sqlite:///mlflow.db``, with the full ``mlflow`` package) or a server
    (``http://...``) is used as given.
    """
    MLFLOW.require("logger.mlflow")
    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(tracking_uri=tracking_uri, **kwargs)


def image_writer(logger: Logger) -> ImageWriter | None:
    """``write(tag, image, step)`` that logs a ``(3, H, W)`` image in [0, 1] to ``logger``,
    or None for a logger that takes no images (CSV): TensorBoard's ``add_image``, W&B's
    ``log_image``, MLflow's ``log_image`` (a PNG under the run's ``images/`` artifacts with
    its step)."""
    if isinstance(logger, WandbLogger):
        return lambda tag, image, step: logger.log_image(tag, [to_pil_image(image)], step=step)
    if isinstance(logger, MLFlowLogger):
        return lambda tag, image, step: logger.experiment.log_image(
            logger.run_id, to_pil_image(image), key=tag, step=step
        )
    experiment = logger.experiment
    return experiment.add_image if hasattr(experiment, "add_image") else None


def image_writers(loggers: Iterable[Logger]) -> list[ImageWriter]:
    """The :func:`image_writer` of every logger that takes images."""
    return [write for write in map(image_writer, loggers) if write is not None]


def finish_runs(loggers: Iterable[Logger], failed: bool = False) -> None:
    """End the tracking runs that Lightning leaves open after ``fit`` and ``test``.

    W&B keeps one global run per process, and Lightning's WandbLogger joins a run already in
    progress: without this, a fine-tuning started after a pre-training in the same process
    (the Python API, a notebook) would log into the pre-training's run. MLflow's runs are
    ended by Lightning (``finalize``), TensorBoard's and CSV's files closed there.
    """
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
        # finish() returns before W&B's service has written the run's last records (offline
        # at least): its teardown waits for them, so the run folder is complete on return.
        wandb.teardown()
