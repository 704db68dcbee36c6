"""The fine-tuning LightningModule: an encoder and a new linear head on its output h.

The protocols (SimCLR, sections 4 and 6), each a fine-tuning mode (``mode``):

- ``linear``: the encoder is frozen *and kept in eval mode* (its BatchNorm statistics stay
  those of pre-training); only a new linear classifier on the representation h trains.
- ``full``: the whole network trains, as the project this framework grew from did (NAdam,
  learning rate 1e-4, gradient clipping at norm 10).

The classifier may sit on a layer of the pre-trained projection head instead of h
(``from_head_layer``, SimCLR v2; :func:`simclr.models.heads.head_layers`), start at zero
(``zero_init_classifier``, the official ``--zero_init_logits_layer``), and have its weight
treated by the optimiser like any weight or as the official LARS treats it
(``classifier_group``, see :data:`CLASSIFIER_GROUPS`).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from simclr.models.pretrained import PretrainedNetwork
from simclr.optim import lightning_optimization, parameter_groups
from simclr.registry import Registry
from simclr.rules import state

# Each fine-tuning mode, by its ``mode`` name: whether it trains the encoder.
MODES: Registry[bool] = state(Registry("fine-tuning mode", "mode"))
MODES.register("full")(True)
MODES.register("linear")(False)
# Where the optimiser puts the classifier's weight matrix, by ``classifier_group``: its
# weight decay and whether LARS adapts its step (biases and BatchNorm get neither, always).
# ``weights``: as every weight matrix; ``unadapted``: decayed but not adapted, as the official
# code (its LARS excludes ``head_supervised`` and adds that layer's decay to the loss:
# a zero-initialised classifier under LARS would otherwise take steps scaled by its own tiny
# norm); ``excluded``: with the biases, neither decayed nor adapted.
CLASSIFIER_GROUPS: Registry[dict] = state(
    Registry("classifier parameter group", "classifier_group")
)
CLASSIFIER_GROUPS.register("weights")({"decayed": True, "lars_exclude": False})
CLASSIFIER_GROUPS.register("unadapted")({"decayed": True, "lars_exclude": True})
CLASSIFIER_GROUPS.register("excluded")({"decayed": False, "lars_exclude": True})
# Accuracy within the k best guesses, for every k a run reports (when k <= classes).
TOP_K = {"acc": 1, "acc_top5": 5}


class FineTuneModule(L.LightningModule):
    """A pre-trained (or fresh) encoder and a new linear head on its output h.

    Args:
        network: the encoder and the kept layers of its projection head, built and loaded
            (:meth:`~simclr.models.pretrained.PretrainedEncoder.network`); its
            ``architecture`` goes into the hyperparameters, so a checkpoint says which
            backbone, image size and head it holds.
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
        zero_init_classifier: start the classifier's weight and bias at zero, as the official
            evaluations do (``--zero_init_logits_layer=True``); false: PyTorch's default
            initialisation.
        classifier_group: how the optimiser treats the classifier's weight matrix, a name of
            :data:`CLASSIFIER_GROUPS` (``weights``, ``unadapted``: the official, ``excluded``).
    """

    def __init__(
        self,
        network: PretrainedNetwork,
        num_classes: int,
        mode: str,
        optimizer: dict,
        scheduler: dict,
        batch_size: int,
        head_batch_norm: bool = False,
        zero_init_classifier: bool = False,
        classifier_group: str = "weights",
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["network"])
        self.hparams.update(network.architecture)
        self.train_encoder = MODES[mode]
        self.classifier_group = CLASSIFIER_GROUPS[classifier_group]
        # The kept layers of the projection head (empty for from_head_layer=0) are part of the
        # pre-trained network, frozen with the encoder in linear evaluation.
        self.encoder, self.head_layers = network.encoder, network.head_layers
        classifier_dim = network.output_dim
        for pretrained in (self.encoder, self.head_layers):
            pretrained.requires_grad_(self.train_encoder)
            if not self.train_encoder:  # freshly built modules are in training mode
                pretrained.eval()
        linear = nn.Linear(classifier_dim, num_classes)
        if zero_init_classifier:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
        if head_batch_norm:
            self.classifier = nn.Sequential(nn.BatchNorm1d(classifier_dim, affine=False), linear)
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

    @property
    def linear(self) -> nn.Linear:
        """The classifier's linear layer (after its BatchNorm, with ``head_batch_norm``)."""
        return (
            self.classifier[-1] if isinstance(self.classifier, nn.Sequential) else self.classifier
        )

    def train(self, mode: bool = True):
        """Linear evaluation keeps the frozen encoder in eval mode: its BatchNorm layers
        normalise with the pre-training statistics and never update them."""
        super().train(mode)
        if not self.train_encoder:
            self.encoder.eval()
            self.head_layers.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` for images ``(B, 3, H, W)``."""
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            h = self.head_layers(self.encoder(images))
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
            self,
            self.hparams.batch_size,
            self.hparams.optimizer,
            self.hparams.scheduler,
            groups=self.parameter_groups(self.hparams.optimizer.get("weight_decay", 0.0)),
        )

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """The optimiser's parameter groups: weights, and biases with BatchNorm (as in
        pre-training), with the classifier's weight in a group of its own that
        ``classifier_group`` describes."""
        weight = self.linear.weight
        groups = parameter_groups(self, weight_decay)
        groups[0]["params"] = [p for p in groups[0]["params"] if p is not weight]
        classifier = {
            "params": [weight],
            "weight_decay": weight_decay if self.classifier_group["decayed"] else 0.0,
            "lars_exclude": self.classifier_group["lars_exclude"],
        }
        return [group for group in (*groups, classifier) if group["params"]]
