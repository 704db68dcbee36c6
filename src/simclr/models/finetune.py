"""The fine-tuning LightningModule: an encoder and a new linear head on its output h.

The protocols (SimCLR, sections 4 and 6), each a fine-tuning mode (``mode``):

- ``linear``: the encoder is frozen *and kept in eval mode* (its BatchNorm statistics stay
  those of pre-training); only a new linear classifier on the representation h trains.
- ``full``: the whole network trains, as the project this framework grew from did (NAdam,
  learning rate 1e-4, gradient clipping at norm 10).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from simclr.models.backbones import build_backbone
from simclr.optim import lightning_optimization
from simclr.registry import Registry

# Each fine-tuning mode, by its ``mode`` name: whether it trains the encoder.
MODES: Registry[bool] = Registry("fine-tuning mode", "mode")
MODES.register("full")(True)
MODES.register("linear")(False)
# Accuracy within the k best guesses, for every k a run reports (when k <= classes).
TOP_K = {"acc": 1, "acc_top5": 5}


class FineTuneModule(L.LightningModule):
    """An encoder (from the backbone registry) and a new linear head on its output h.

    Args:
        backbone: :func:`~simclr.models.build_backbone`'s arguments without ``image_size``.
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
