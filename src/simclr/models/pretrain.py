"""The SimCLR pre-training LightningModule: encoder f, projection head g, NT-Xent.

Every hyperparameter arrives as a plain value (numbers, strings, dicts), so
``save_hyperparameters()`` writes a readable ``hparams.yaml`` and a checkpoint loads without
the Hydra config tree.
"""

from __future__ import annotations

import contextlib
import logging

import lightning as L
import torch
from torch import Tensor, nn

from simclr.errors import ConfigError
from simclr.losses.ntxent import NTXentLoss
from simclr.memory import activation_checkpointing as recompute
from simclr.memory.gradcache import gradient_cached_step
from simclr.models.backbones import build_backbone
from simclr.models.heads import ProjectionHead
from simclr.models.memory_buffer import MemoryBuffer
from simclr.optim import lightning_optimization
from simclr.rules import ACTIVATION_CHECKPOINTING, MICRO_BATCH_SIZE, NUM_VIEWS

log = logging.getLogger(__name__)


class SimCLRModule(L.LightningModule):
    """Pre-trains ``encoder`` by contrasting ``num_views`` augmented views of each image.

    Args:
        backbone: keyword arguments of :func:`~simclr.models.backbones.build_backbone` (``name``,
            ``small_stem``, ``width``, ``depthwise``), without ``image_size``.
        head: keyword arguments of :class:`~simclr.models.heads.ProjectionHead`, without
            ``input_dim``.
        optimizer: keyword arguments of :func:`~simclr.optim.build_optimizer` without the model
            and the batch size.
        scheduler: keyword arguments of :func:`~simclr.optim.build_scheduler`
            (``warmup_epochs``, ``min_lr_ratio``).
        image_size: side of the training views in pixels (chooses the stem).
        batch_size: global batch (images per optimiser step over all devices), for the
            learning-rate scaling.
        micro_batch_size: images per forward pass for gradient caching (exact NT-Xent over the
            whole batch with the memory of a micro-batch, see :mod:`simclr.memory.gradcache`); the
            optimisation is then manual. ``None``: one pass over the batch.
        gradient_clip_val: the gradient norm (or value) clipped at by the module itself in the
            gradient-caching mode (Lightning clips only in automatic optimisation).
        gradient_clip_algorithm: ``norm`` or ``value``, as Lightning's option of that name.
        channels_last: keep the encoder's weights and inputs in channels-last memory format
            (faster convolutions on CPUs and tensor-core GPUs; see bench/).
        compile_encoder: ``torch.compile`` the encoder (slow start, faster steps on GPUs).
        activation_checkpointing: recompute each residual block's activations in the backward
            pass instead of keeping them (same gradients, about a third more compute, much less
            memory; see :mod:`simclr.memory.activation_checkpointing`). ``"auto"``: on when one
            pass's activations would not fit in the free memory, decided when training starts.
        sum_over_views: optimise the sum over the V views of each view's mean loss, V times
            the paper's mean, as the official code does (``loss_a + loss_b``). Under LARS an
            adapted weight's step depends only on the direction of ``g + wd w`` (its size is
            ``lr * trust * ||w||``), and V g + wd w points where g + (wd / V) w does: the mean
            loss with weight decay wd takes the steps of the summed loss with V wd (twice the
            weight decay for V = 2) on the adapted weights, and the biases and BatchNorm
            parameters (neither adapted nor decayed) take steps V times smaller. Without weight
            decay only the latter differ. The logged ``train/loss`` is the paper's mean either
            way.
        view_passes: ``False`` (the official code): one encoder pass over all V x N views,
            so BatchNorm normalises them together; ``True``: one pass per view, each view
            normalised by its own batch statistics, as the examples of lightly and solo-learn
            do (one pass over a whole micro-batch with gradient caching: not combinable).
        memory: SimCLR v2's memory buffer of negatives, keyword arguments of
            :class:`~simclr.models.memory_buffer.MemoryBuffer` (``size``, ``momentum``,
            ``source``); ``None`` or ``size`` 0: off. With gradient accumulation, each forward
            pass (not each optimiser step) moves the momentum encoder and enqueues its keys.
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
        micro_batch_size: int | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        channels_last: bool = False,
        compile_encoder: bool = False,
        activation_checkpointing: bool | str = "auto",
        sum_over_views: bool = False,
        view_passes: bool = False,
        memory: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        NUM_VIEWS.check(num_views)
        MICRO_BATCH_SIZE.check(micro_batch_size)
        if view_passes and micro_batch_size is not None:
            raise ConfigError(
                "model.view_passes=true forwards each view of the whole batch in its own pass; "
                "gradient caching (model.micro_batch_size) forwards micro-batches of all views: "
                "set one of them to its default (false, null)"
            )
        ACTIVATION_CHECKPOINTING.check(activation_checkpointing)
        # Gradient caching runs its own backward passes.
        self.automatic_optimization = micro_batch_size is None
        self.encoder, self.feature_dim = build_backbone(image_size=image_size, **backbone)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.encoder.to(memory_format=self.memory_format)
        # Stages that can recompute their activations; "auto" switches them on in on_fit_start.
        self._checkpointed_stages = []
        if activation_checkpointing is not False:
            self._checkpointed_stages = recompute.checkpoint_stages(
                self.encoder, required=activation_checkpointing is True
            )
            self._set_checkpointing(activation_checkpointing is True)
        self.projection = ProjectionHead(self.feature_dim, **head)
        self.memory = None
        if memory and memory.get("size"):
            # Built before compiling: the momentum encoder copies the plain encoder.
            self.memory = MemoryBuffer(
                self.encoder,
                self.projection,
                self.projection.output_dim,
                memory_format=self.memory_format,
                **memory,
            )
        if compile_encoder:
            self.encoder.compile()  # in place: parameter names stay those of the encoder
        self.criterion = NTXentLoss(temperature)
        # What the optimiser minimises: the logged mean loss times this.
        self.loss_weight = float(num_views) if sum_over_views else 1.0

    def forward(self, images: Tensor) -> Tensor:
        """The representation h ``(B, feature_dim)`` used downstream."""
        return self.encoder(images.contiguous(memory_format=self.memory_format))

    def on_fit_start(self) -> None:
        # torch's SyncBatchNorm refuses CPU tensors, with a message that does not say what to do.
        synced = any(isinstance(m, nn.SyncBatchNorm) for m in self.modules())
        if synced and self.trainer.world_size > 1 and self.device.type == "cpu":
            raise ConfigError(
                "trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm does not run on "
                "CPU); set trainer.sync_batchnorm=false for a multi-process CPU run"
            )
        if self.hparams.activation_checkpointing == "auto" and self._checkpointed_stages:
            self._choose_checkpointing()

    def _set_checkpointing(self, enabled: bool) -> None:
        for stage in self._checkpointed_stages:
            stage.enabled = enabled

    def _choose_checkpointing(self) -> None:
        """``activation_checkpointing="auto"``: measure what one training pass would keep for
        its backward pass on this device, and checkpoint if that does not fit comfortably."""
        precision = self.trainer.precision_plugin
        size = self.hparams.image_size
        generator = torch.Generator().manual_seed(0)  # leaves the seeded streams alone

        def probe_images(count: int) -> Tensor:
            images = torch.randn(count, 3, size, size, generator=generator).to(self.device)
            return precision.convert_input(images)

        with precision.train_step_context():
            per_image = recompute.activation_bytes_per_image(self, self._encode, probe_images)
        images_per_pass = self.hparams.micro_batch_size or (
            self.hparams.batch_size // self.trainer.world_size
        )
        views_per_pass = images_per_pass * self.hparams.num_views
        needed = per_image * views_per_pass
        # CPU processes of one run on one machine share its RAM.
        free = recompute.free_device_memory(self.device, processes_sharing=self.trainer.num_devices)
        enabled = recompute.should_checkpoint(needed, free)
        self._set_checkpointing(enabled)
        log.info(recompute.decision_message(enabled, views_per_pass, needed, free))

    def training_step(self, batch: tuple[list[Tensor], Tensor], batch_idx: int) -> dict:
        """Returns the loss, plus the first view's detached representations ``(N, F)`` and the
        labels ``(N,)`` for the monitors (SimCLR itself never sees the labels)."""
        views, labels = batch  # V tensors (N, 3, H, W)
        if self.memory is not None:
            self.memory.start_step(self.encoder, self.projection)
        if self.automatic_optimization:
            num_views, num_images = len(views), views[0].shape[0]
            if self.hparams.view_passes:  # one pass per view, each normalised alone
                h, z = (torch.cat(parts) for parts in zip(*map(self._encode, views), strict=True))
            else:  # one pass over all VN views
                h, z = self._encode(torch.cat(views))
            loss, accuracy = self._contrast(z.view(num_views, num_images, -1))
            features = h[:num_images].detach()
        else:
            loss, accuracy, features = self._gradient_cached_step(views)
        if self.memory is not None:  # after the loss: a step never meets its own keys
            keys = self.memory.keys(
                views,
                self._projections,
                self.hparams.view_passes,
                self.hparams.micro_batch_size,
            )
            self.memory.enqueue(keys)
        # Under DDP each rank's loss covers its own anchors: log the mean over ranks.
        for name, value in (("train/loss", loss), ("train/contrastive_acc", accuracy)):
            self.log(name, value, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return {"loss": loss * self.loss_weight, "features": features, "labels": labels}

    def _encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        h = self(images)
        return h, self.projection(h)

    def _gradient_cached_step(self, views: list[Tensor]):
        """One optimiser step over the batch, forwarded ``micro_batch_size`` images at a time."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        step = gradient_cached_step(
            self,
            self._encode,
            views,
            self._weighted_criterion,
            self.hparams.micro_batch_size,
            backward=self.manual_backward,
            # DDP: reduce the gradients once, after the last micro-batch.
            no_sync=getattr(self.trainer.strategy, "block_backward_sync", contextlib.nullcontext),
        )
        if self.hparams.gradient_clip_val:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.hparams.gradient_clip_val,
                gradient_clip_algorithm=self.hparams.gradient_clip_algorithm,
            )
        optimizer.step()
        self.lr_schedulers().step()
        loss, accuracy, features = step
        return loss / self.loss_weight, accuracy, features

    def _contrast(self, z: Tensor):
        """NT-Xent over the projections ``(V, N, D)`` and the memory buffer's keys; keeps the
        projections (detached) for a buffer filled from them."""
        if self.memory is None:
            return self.criterion(z)
        self._projections = z.detach()
        return self.criterion(z, self.memory.negatives())

    def _weighted_criterion(self, z: Tensor):
        loss, accuracy = self._contrast(z)
        return loss * self.loss_weight, accuracy

    def configure_optimizers(self):
        return lightning_optimization(
            self, self.hparams.batch_size, self.hparams.optimizer, self.hparams.scheduler
        )
