"""``run(cfg)``: fine-tuning or linear evaluation of an encoder (what ``finetune.py`` calls).

The modes (``full``, ``linear``) are those of :class:`~simclr.models.finetune.FineTuneModule`.
Both train on a class-balanced fraction of the training labels (``label_fraction``: the
semi-supervised 1% / 10%) or on a published list of images (``label_subset``), pick the epoch
with the best validation accuracy, and report the test accuracy of that checkpoint; with
``select_on_val=false`` they train on the validation images too and report the last epoch,
as the official evaluations. The encoder comes from a pre-training checkpoint or an exported
encoder (``pretrained_ckpt``), or is freshly initialised (``pretrained_ckpt=null``, the
baseline); the classifier sits on h or on a layer of the pre-trained projection head
(``from_head_layer``).
"""

from __future__ import annotations

import copy
import logging
import warnings

from omegaconf import DictConfig, open_dict

from simclr.data.finetuning import FineTuneDataModule
from simclr.models.finetune import FineTuneModule
from simclr.models.pretrained import PretrainedEncoder
from simclr.tasks.common import plain, recorded_trainer, start_run

log = logging.getLogger(__name__)


def without_validation(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` for ``select_on_val=false``: no validation loop (nor its sanity
    check), and the best-checkpoint callback keeps only ``last.ckpt``, since there is no
    validation accuracy to choose by."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.num_sanity_val_steps = 0
        if cfg.get("callbacks") and cfg.callbacks.get("best_checkpoint"):
            cfg.callbacks.best_checkpoint.monitor = None
            cfg.callbacks.best_checkpoint.save_top_k = 0
    return cfg


def run(cfg: DictConfig) -> dict[str, float]:
    """Fine-tune or linearly evaluate as ``cfg`` says (``configs/finetune.yaml``); returns the
    test metrics of the best validation checkpoint (of the last epoch with
    ``select_on_val=false``), also written to ``metrics.json``.

    The config is checked before any work, as for pre-training (``label_fraction`` included);
    ``ckpt_path`` resumes a fine-tuning run as it does a pre-training one.
    """
    if not cfg.select_on_val:
        cfg = without_validation(cfg)
    ckpt_path = start_run(cfg)
    # The Trainer depends on the config alone (fine-tuning optimises automatically), so the
    # whole run is its recorded block: a failure reading the encoder ends the loggers' runs too.
    with recorded_trainer(cfg) as (trainer, metrics):
        network = PretrainedEncoder.for_finetuning(
            cfg.pretrained_ckpt,
            backbone=plain(cfg.backbone) if cfg.get("backbone") else None,
            image_size=cfg.image_size,
            data_image_size=cfg.data.image_size,
            from_head_layer=cfg.from_head_layer,
        ).network(cfg.from_head_layer)
        datamodule = FineTuneDataModule(
            {**plain(cfg.data), "image_size": network.image_size},
            label_fraction=cfg.label_fraction,
            label_seed=cfg.label_seed,
            label_subset=cfg.label_subset,
            select_on_val=cfg.select_on_val,
            seed=cfg.get("seed"),
            **plain(cfg.augment),
        )
        model = FineTuneModule(
            network,
            num_classes=datamodule.num_classes,
            mode=cfg.mode,
            optimizer=plain(cfg.optimizer),
            scheduler=plain(cfg.scheduler),
            batch_size=cfg.data.batch_size,
            head_batch_norm=cfg.head_batch_norm,
            zero_init_classifier=cfg.zero_init_classifier,
            classifier_group=cfg.classifier_group,
        )
        log.info(
            "mode %s; training on %d labelled images (%s)",
            cfg.mode,
            len(datamodule.train_indices),
            f"label_subset={cfg.label_subset}"
            if cfg.label_subset is not None
            else f"label_fraction={cfg.label_fraction}",
        )
        with warnings.catch_warnings():
            if not model.train_encoder:  # the frozen encoder is in eval mode on purpose
                warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update(
            (k, float(v)) for k, v in trainer.callback_metrics.items() if k == "val/acc_best"
        )
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not cfg.select_on_val:
            best = ""
            log.info("select_on_val=false: testing the weights of the last epoch")
        elif not best:
            log.warning("no best checkpoint was saved; testing the final weights")
        results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        log.info("tested the best checkpoint: %s", best or "none")
        metrics.update((name, float(value)) for name, value in results[0].items())
        metrics["train/num_images"] = float(len(datamodule.train_indices))
        # The images each accuracy is counted over: the whole split, every image once.
        splits = datamodule.labelled.load_splits()
        metrics["test/num_images"] = float(len(splits.test))
        if "val/acc_best" in metrics:
            metrics["val/num_images"] = float(len(splits.val))
    for name, value in sorted(metrics.items()):
        print(f"{name}: {value:.4f}")
    return metrics
