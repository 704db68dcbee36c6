"""Fine-tuning and linear evaluation of an encoder: the LightningModule and ``run(cfg)``.

The protocols (SimCLR, sections 4 and 6):

- ``linear``: the encoder is frozen *and kept in eval mode* (its BatchNorm statistics stay
  those of pre-training); only a new linear classifier on the representation h trains.
- ``full``: the whole network trains, as the project this framework grew from did (NAdam,
  learning rate 1e-4, gradient clipping at norm 10).

Both train on a class-balanced fraction of the training labels (``label_fraction``: the
semi-supervised 1% / 10%), pick the epoch with the best validation accuracy, and report the
test accuracy of that checkpoint. The encoder comes from a pre-training checkpoint or an
exported encoder (``pretrained_ckpt``), or is freshly initialised (``pretrained_ckpt=null``,
the baseline).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from simclr.config.checks import validate_config
from simclr.data.augment.transforms import simclr_augmentation
from simclr.data.pretraining import (
    SimCLRDataModule,
    Transformed,
    balanced_subset,
    make_loader,
    world_size,
)
from simclr.errors import ConfigError
from simclr.models.backbones import architecture, build_backbone, use_small_stem
from simclr.optim.optimizers import lightning_optimization
from simclr.tasks.export import EncoderWeights, describe, load_encoder_weights, read_encoder
from simclr.tasks.pretrain import build_trainer, plain, write_metrics

log = logging.getLogger(__name__)

# Whether each mode trains the encoder.
MODES: dict[str, bool] = {"full": True, "linear": False}
# Accuracy within the k best guesses, for every k a run reports (when k <= classes).
TOP_K = {"acc": 1, "acc_top5": 5}


class FineTuneModule(L.LightningModule):
    """An encoder (from the backbone registry) and a new linear head on its output h.

    Args:
        backbone: :func:`simclr.models.backbones.build_backbone`'s arguments without ``image_size``.
        image_size: side of the images in pixels.
        num_classes: classes of the labelled task.
        mode: ``full`` (everything trains) or ``linear`` (encoder frozen, in eval mode).
        optimizer: :func:`~simclr.optim.build_optimizer`'s arguments without the model/batch.
        scheduler: :func:`~simclr.optim.build_scheduler`'s (``warmup_epochs``, ``min_lr_ratio``).
        batch_size: global batch, for the learning-rate scaling.
        head_batch_norm: put a BatchNorm without affine parameters on h before the linear
            layer (as MAE's linear probing, He et al. 2021): it standardises every feature, so
            one learning rate suits encoders whose features differ in scale by orders of
            magnitude (a random encoder's are tiny), and at test time it is a fixed affine map,
            so the head stays a linear classifier.
    """

    def __init__(
        self,
        backbone: dict,
        image_size: int,
        num_classes: int,
        mode: str,
        optimizer: dict,
        scheduler: dict,
        batch_size: int,
        head_batch_norm: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        self.train_encoder = MODES[mode]
        self.encoder, self.feature_dim = build_backbone(image_size=image_size, **backbone)
        self.encoder.requires_grad_(self.train_encoder)
        self.encoder.train(self.train_encoder)
        linear = nn.Linear(self.feature_dim, num_classes)
        if head_batch_norm:
            self.classifier = nn.Sequential(nn.BatchNorm1d(self.feature_dim, affine=False), linear)
        else:
            self.classifier = linear
        metrics = {
            name: MulticlassAccuracy(num_classes, top_k=k, average="micro")
            for name, k in TOP_K.items()
            if k <= num_classes
        }
        self.train_metrics = MetricCollection(metrics, prefix="train/")
        self.val_metrics = self.train_metrics.clone(prefix="val/")
        self.test_metrics = self.train_metrics.clone(prefix="test/")
        self.val_acc_best = MaxMetric()

    def train(self, mode: bool = True):
        """Linear evaluation keeps the frozen encoder in eval mode: its BatchNorm layers
        normalise with the pre-training statistics and never update them."""
        super().train(mode)
        if not self.train_encoder:
            self.encoder.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` for images ``(B, 3, H, W)``."""
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            h = self.encoder(images)
        return self.classifier(h)

    def _step(self, batch, metrics: MetricCollection, stage: str) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        metrics.update(logits, labels)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self._step(batch, self.train_metrics, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        # Computed before Lightning resets the collection at the end of the epoch.
        self.val_acc_best.update(self.val_metrics["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, self.test_metrics, "test")

    def configure_optimizers(self):
        return lightning_optimization(
            self, self.hparams.batch_size, self.hparams.optimizer, self.hparams.scheduler
        )


def dataset_labels(dataset: Dataset) -> Tensor:
    """Every label of a labelled data set ``(N,)``, without decoding images when it can."""
    for attribute in ("labels", "targets"):
        if hasattr(dataset, attribute):
            return torch.as_tensor(getattr(dataset, attribute), dtype=torch.long)
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])


class FineTuneDataModule(L.LightningDataModule):
    """The labelled splits of a registered data set for fine-tuning.

    Training uses ``label_fraction`` of the training split, the same number of images from
    every class (:func:`~simclr.data.balanced_subset`, fixed by ``label_seed``), with random
    resized crops and flips (the paper's linear-evaluation augmentation); validation (model
    selection) and test use the data set's own val and test splits with the evaluation
    transform, so neither is ever trained on.
    """

    def __init__(
        self,
        data: dict,
        label_fraction: float,
        label_seed: int = 0,
        crop_scale: Sequence[float] = (0.08, 1.0),
        flip_prob: float = 0.5,
    ):
        super().__init__()
        # The DataModule of pre-training serves the splits; its views are not used here.
        self.source = SimCLRDataModule(num_views=2, **data)
        self.batch_size = self.source.batch_size
        self.label_fraction = label_fraction
        self.label_seed = label_seed
        self.crop_scale, self.flip_prob = tuple(crop_scale), flip_prob
        self._train_indices: Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def train_indices(self) -> Tensor:
        """Indices into the training split of the images trained on (sorted)."""
        if self._train_indices is None:
            labels = dataset_labels(self.source.load_splits().train)
            self._train_indices = balanced_subset(labels, self.label_fraction, self.label_seed)
        return self._train_indices

    def train_dataset(self) -> Dataset:
        source = self.source
        augment = simclr_augmentation(
            source.image_size,
            source.mean,
            source.std,
            color_prob=0.0,
            grayscale_prob=0.0,
            crop_scale=self.crop_scale,
            flip_prob=self.flip_prob,
        )
        train = Transformed(source.load_splits().train, augment)
        return Subset(train, self.train_indices.tolist())

    def setup(self, stage: str | None = None) -> None:
        # The source makes the val and test loaders: its worker count and pinning must follow
        # this run's trainer (devices, accelerator), which Lightning only hands to this module.
        self.source.trainer = self.trainer
        self.source.setup(stage)

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset()
        batch_size = min(max(1, self.batch_size // world_size(self.trainer)), len(dataset))
        return make_loader(dataset, batch_size, "train", self.source.loader_settings, self.trainer)

    def val_dataloader(self) -> DataLoader:
        return self.source.labelled_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.source.labelled_dataloader("test")


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
        wanted = dict(requested)
        wanted["small_stem"] = use_small_stem(weights.image_size, wanted.get("small_stem"))
        if architecture(wanted) != architecture(weights.backbone):
            raise ConfigError(
                f"backbone is {describe(wanted)}, but {weights.source} holds a "
                f"{describe(weights.backbone)} encoder; drop the backbone override to use the "
                "checkpoint's"
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


def run(cfg: DictConfig) -> dict[str, float]:
    """Fine-tune or linearly evaluate as ``cfg`` says (``configs/finetune.yaml``); returns the
    test metrics of the best validation checkpoint, also written to ``metrics.json``.

    The config is checked before any work, as for pre-training (``label_fraction`` included).
    """
    validate_config(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    weights = read_encoder(cfg.pretrained_ckpt) if cfg.pretrained_ckpt is not None else None
    backbone = resolve_backbone(plain(cfg.backbone) if cfg.get("backbone") else None, weights)
    image_size = resolve_image_size(cfg.image_size, weights, cfg.data.image_size)
    datamodule = FineTuneDataModule(
        {**plain(cfg.data), "image_size": image_size},
        label_fraction=cfg.label_fraction,
        label_seed=cfg.label_seed,
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
    )
    if weights is not None:
        load_encoder_weights(model.encoder, weights)
        log.info("encoder %s loaded from %s", describe(weights.backbone), weights.source)
    else:
        log.info("encoder %s randomly initialised (baseline)", describe(backbone))
    log.info(
        "mode %s; training on %d labelled images (label_fraction=%s)",
        cfg.mode,
        len(datamodule.train_indices),
        cfg.label_fraction,
    )
    trainer = build_trainer(cfg, model)
    log.info("output folder: %s", cfg.paths.output_dir)
    with warnings.catch_warnings():
        if not model.train_encoder:  # the frozen encoder is in eval mode on purpose
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        trainer.fit(model, datamodule=datamodule)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k == "val/acc_best"}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best:
        log.warning("no best checkpoint was saved; testing the final weights")
    results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics = {**fit_metrics, **{name: float(value) for name, value in results[0].items()}}
    metrics["train/num_images"] = float(len(datamodule.train_indices))
    path = write_metrics(metrics, cfg.paths.output_dir)
    for name, value in sorted(metrics.items()):
        print(f"{name}: {value:.4f}")
    log.info("metrics written to %s (best checkpoint: %s)", path, best or "none")
    return metrics
