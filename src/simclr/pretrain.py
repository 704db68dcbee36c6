"""The SimCLR pre-training LightningModule: encoder f, projection head g, NT-Xent.

Every hyperparameter arrives as a plain value (numbers, strings, dicts), so
``save_hyperparameters()`` writes a readable ``hparams.yaml`` and a checkpoint loads without
the Hydra config tree.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from simclr.backbones import build_backbone
from simclr.errors import ConfigError
from simclr.heads import ProjectionHead
from simclr.loss import NTXentLoss
from simclr.optim import build_optimizer, build_scheduler


class SimCLRModule(L.LightningModule):
    """Pre-trains ``encoder`` by contrasting ``num_views`` augmented views of each image.

    Args:
        backbone: keyword arguments of :func:`simclr.backbones.build_backbone` (``name``,
            ``small_stem``, ``width``, ``depthwise``), without ``image_size``.
        head: keyword arguments of :class:`simclr.heads.ProjectionHead`, without ``input_dim``.
        optimizer: keyword arguments of :func:`simclr.optim.build_optimizer` without the model
            and the batch size.
        scheduler: keyword arguments of :func:`simclr.optim.build_scheduler` (``warmup_epochs``,
            ``min_lr_ratio``).
        image_size: side of the training views in pixels (chooses the stem).
        batch_size: global batch (images per optimiser step over all devices), for the
            learning-rate scaling.
        channels_last: keep the encoder's weights and inputs in channels-last memory format
            (faster convolutions on CPUs and tensor-core GPUs; see bench/).
        compile_encoder: ``torch.compile`` the encoder (slow start, faster steps on GPUs).
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        optimizer: dict,
        scheduler: dict,
        image_size: int,
        batch_size: int,
        temperature: float = 0.5,
        num_views: int = 2,
        channels_last: bool = False,
        compile_encoder: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        if num_views < 2:
            raise ConfigError(f"model.num_views must be >= 2, got {num_views}")
        self.encoder, self.feature_dim = build_backbone(image_size=image_size, **backbone)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.encoder.to(memory_format=self.memory_format)
        if compile_encoder:
            self.encoder.compile()  # in place: parameter names stay those of the encoder
        self.projection = ProjectionHead(self.feature_dim, **head)
        self.criterion = NTXentLoss(temperature)

    def forward(self, images: Tensor) -> Tensor:
        """The representation h ``(B, feature_dim)`` used downstream."""
        return self.encoder(images.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: tuple[list[Tensor], Tensor], batch_idx: int) -> dict:
        """Returns the loss, plus the first view's detached representations ``(N, F)`` and the
        labels ``(N,)`` for the monitors (SimCLR itself never sees the labels)."""
        views, labels = batch  # V tensors (N, 3, H, W)
        num_views, num_images = len(views), views[0].shape[0]
        h = self(torch.cat(views))  # one pass over all VN views
        z = self.projection(h)
        loss, accuracy = self.criterion(z.view(num_views, num_images, -1))
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/contrastive_acc", accuracy, prog_bar=True, on_step=True, on_epoch=True)
        return {"loss": loss, "features": h[:num_images].detach(), "labels": labels}

    def configure_optimizers(self):
        optimizer = build_optimizer(
            self, batch_size=self.hparams.batch_size, **self.hparams.optimizer
        )
        total_steps = int(self.trainer.estimated_stepping_batches)
        # Known once estimated_stepping_batches has set up the training loader.
        steps_per_epoch = max(
            1, self.trainer.num_training_batches // self.trainer.accumulate_grad_batches
        )
        scheduler = build_scheduler(
            optimizer, total_steps, steps_per_epoch, **self.hparams.scheduler
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
