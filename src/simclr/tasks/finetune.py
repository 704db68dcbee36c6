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
from simclr.errors import ConfigError
from simclr.models.backbones import architecture, describe_backbone, resolved
from simclr.models.encoder_files import EncoderWeights, load_encoder_weights, read_encoder
from simclr.models.finetune import FineTuneModule
from simclr.models.head_layers import FROM_HEAD_LAYER, load_head_layers, read_head
from simclr.tasks.common import build_trainer, logging_to_the_end, plain, start_run, write_metrics

log = logging.getLogger(__name__)


def resolve_backbone(requested: dict | None, weights: EncoderWeights | None) -> dict:
    """The architecture to build: the pre-trained encoder's, which a ``backbone=`` choice must
    match; without pre-trained weights, the chosen one."""
    if weights is None:
        if requested is None:
            raise ConfigError(
                "pretrained_ckpt=null (a randomly initialised encoder) needs a backbone: "
                "add backbone=<name>, e.g. backbone=resnet18_slim"
            )
        return requested
    if requested is not None:
        wanted = resolved(requested, weights.image_size)
        if architecture(wanted) != architecture(weights.backbone):
            raise ConfigError(
                f"backbone is {describe_backbone(wanted)}, but {weights.source} holds a "
                f"{describe_backbone(weights.backbone)} encoder; drop the backbone override to "
                "use the checkpoint's"
            )
    return weights.backbone


def resolve_image_size(
    requested: int | None, weights: EncoderWeights | None, data_default: int
) -> int:
    """``image_size`` if given, else the pre-trained encoder's, else the data config's."""
    if weights is None:
        return requested or data_default
    if requested is not None and requested != weights.image_size:
        log.warning(
            "image_size=%d overrides the %d px the encoder was pre-trained at",
            requested,
            weights.image_size,
        )
    return requested or weights.image_size


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
    ckpt_path = start_run(cfg)
    weights = read_encoder(cfg.pretrained_ckpt) if cfg.pretrained_ckpt is not None else None
    backbone = resolve_backbone(plain(cfg.backbone) if cfg.get("backbone") else None, weights)
    image_size = resolve_image_size(cfg.image_size, weights, cfg.data.image_size)
    # SimCLR v2: the classifier on a layer of the pre-trained projection head.
    from_head_layer = FROM_HEAD_LAYER.check(cfg.from_head_layer)
    if from_head_layer and weights is None:
        raise ConfigError(
            f"from_head_layer={from_head_layer} keeps layers of a pre-trained projection head: "
            "give pretrained_ckpt (pretrained_ckpt=null has no head)"
        )
    head = read_head(cfg.pretrained_ckpt) if from_head_layer else None
    datamodule = FineTuneDataModule(
        {**plain(cfg.data), "image_size": image_size},
        label_fraction=cfg.label_fraction,
        label_seed=cfg.label_seed,
        label_subset=cfg.label_subset,
        select_on_val=cfg.select_on_val,
        seed=cfg.get("seed"),
        **plain(cfg.augment),
    )
    model = FineTuneModule(
        backbone=backbone,
        image_size=image_size,
        num_classes=datamodule.num_classes,
        mode=cfg.mode,
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler),
        batch_size=cfg.data.batch_size,
        head_batch_norm=cfg.head_batch_norm,
        head=head.config if head is not None else None,
        from_head_layer=from_head_layer,
        zero_init_classifier=cfg.zero_init_classifier,
        classifier_group=cfg.classifier_group,
    )
    if weights is not None:
        load_encoder_weights(model.encoder, weights)
        log.info("encoder %s loaded from %s", describe_backbone(weights.backbone), weights.source)
    if head is not None:
        load_head_layers(model.head_layers, head)
        log.info(
            "classifier on layer %d of the projection head of %s", from_head_layer, head.source
        )
    else:
        log.info("encoder %s randomly initialised (baseline)", describe_backbone(backbone))
    log.info(
        "mode %s; training on %d labelled images (%s)",
        cfg.mode,
        len(datamodule.train_indices),
        f"label_subset={cfg.label_subset}"
        if cfg.label_subset is not None
        else f"label_fraction={cfg.label_fraction}",
    )
    if not cfg.select_on_val:
        cfg = without_validation(cfg)
    trainer = build_trainer(cfg, model)
    log.info("output folder: %s", cfg.paths.output_dir)
    with logging_to_the_end(trainer):
        with warnings.catch_warnings():
            if not model.train_encoder:  # the frozen encoder is in eval mode on purpose
                warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        fit_metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k == "val/acc_best"
        }
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not cfg.select_on_val:
            best = ""
            log.info("select_on_val=false: testing the weights of the last epoch")
        elif not best:
            log.warning("no best checkpoint was saved; testing the final weights")
        results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics = {**fit_metrics, **{name: float(value) for name, value in results[0].items()}}
    metrics["train/num_images"] = float(len(datamodule.train_indices))
    path = write_metrics(metrics, cfg.paths.output_dir)
    for name, value in sorted(metrics.items()):
        print(f"{name}: {value:.4f}")
    log.info("metrics written to %s (best checkpoint: %s)", path, best or "none")
    return metrics
