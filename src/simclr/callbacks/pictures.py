"""Pictures of pre-training, for every logger that takes images (TensorBoard, W&B, MLflow;
not CSV): see :func:`simclr.loggers.image_writer`.

- ``views/pairs`` at the start of training: each image's augmented views side by side, at
  least 64 px a view (small images enlarged without blur), so the augmentation's strength
  can be judged at a glance.
- ``val/feature_map_<map>`` every ``every_n_epochs`` epochs and at the last, for each map of
  ``maps`` (``pca``, ``umap``: :mod:`simclr.callbacks.feature_maps`): the validation
  representations in two dimensions, one dot per image coloured by class, with a legend of
  the class names (classes that separate here are what the monitors measure). Not drawn on
  data without labels (:class:`~simclr.callbacks.monitors.LabelMonitor`).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid

from simclr.callbacks.epochs import EVERY_N_EPOCHS, epoch_due
from simclr.callbacks.feature_maps import EXTRA_OF_PROJECTION, PROJECTIONS, draw_feature_map
from simclr.callbacks.monitors import LabelMonitor, embed
from simclr.loggers import image_writers
from simclr.rules import Rule, integer_at_least, state

MAP_SIZE = state(Rule("callbacks.pictures.size", integer_at_least(64), "an integer >= 64 (pixels)"))
# The smallest side a view is shown at in ``views/pairs``.
MIN_TILE = 64
MAX_POINTS = state(Rule("callbacks.pictures.max_points", integer_at_least(2), "an integer >= 2"))


def evenly_spaced(features: Tensor, labels: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """At most ``count`` of the ``(N, F)`` features and their labels, evenly spaced over the
    split's order (no random draw: the same points every epoch, classes in proportion)."""
    if len(labels) <= count:
        return features, labels
    keep = torch.linspace(0, len(labels) - 1, count).round().long()
    return features[keep], labels[keep]


def views_grid(rows: Sequence[Tensor], min_tile: int = MIN_TILE, per_row: int = 4) -> Tensor:
    """A picture of V rows of n views ``(n, 3, S, S)``: each image's V views side by side (a
    thin gap), ``per_row`` such groups a row (a wide gap), every view scaled to its own range
    and shown at least ``min_tile`` pixels a side (nearest-neighbour: small images stay
    sharp)."""
    views = torch.stack(list(rows), dim=1).float()  # (n, V, 3, S, S)
    low = views.amin(dim=(2, 3, 4), keepdim=True)
    high = views.amax(dim=(2, 3, 4), keepdim=True)
    views = (views - low) / (high - low).clamp_min(1e-8)
    size = views.shape[-1]
    if size < min_tile:
        scale = -(-min_tile // size)  # ceil
        n, v = views.shape[:2]
        views = F.interpolate(views.flatten(0, 1), scale_factor=scale, mode="nearest")
        views = views.unflatten(0, (n, v))
    groups = [make_grid(image, nrow=len(image), padding=2, pad_value=1) for image in views]
    return make_grid(torch.stack(groups), nrow=per_row, padding=8, pad_value=1)


class Pictures(LabelMonitor):
    """Draws the view grid and the feature maps (see the module docstring) into every logger
    that takes images; does nothing without one.

    Args:
        num_images: images (columns) in the view grid.
        every_n_epochs: how often the feature maps are drawn (and at the last epoch).
        split: the labelled split mapped.
        maps: the projections drawn, each its own picture: ``pca``, ``umap`` (the ``umap``
            extra); one name or a list.
        size: the side of a map in pixels (the legend adds to the width).
        max_points: at most this many images of the split are mapped (UMAP's time grows
            with them).
    """

    def __init__(
        self,
        num_images: int = 8,
        every_n_epochs: int = 10,
        split: str = "val",
        maps: Sequence[str] | str = ("pca",),
        size: int = 512,
        max_points: int = 5000,
    ):
        self.num_images = num_images
        self.every_n_epochs = EVERY_N_EPOCHS.check(every_n_epochs)
        self.split = split
        self.maps = [
            PROJECTIONS.canonical(name) for name in ([maps] if isinstance(maps, str) else maps)
        ]
        for name in self.maps:
            if name in EXTRA_OF_PROJECTION:
                EXTRA_OF_PROJECTION[name].require(f"{PROJECTIONS.key}={name}")
        self.size = MAP_SIZE.check(size)
        self.max_points = MAX_POINTS.check(max_points)
        self.label_outputs = f"pictures' feature maps ({split}/feature_map_*)"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = image_writers(trainer.loggers) if trainer.is_global_zero else []
        if not writers:
            return
        # Drawn with a forked RNG, so the run's randomness (data order, augmentations) is the
        # same with or without pictures.
        with torch.random.fork_rng(devices=[]):
            rows = trainer.datamodule.preview_views(self.num_images)  # V rows of n views
        grid = views_grid(rows)
        for write in writers:
            write("views/pairs", grid, trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not epoch_due(trainer, self.every_n_epochs):
            return
        writers = image_writers(trainer.loggers)
        if not writers or not self.maps or self.labels_off:
            return
        loader = trainer.datamodule.labelled_dataloader(self.split)
        features, labels = embed(trainer, pl_module.encoder, loader)
        features, labels = evenly_spaced(features.cpu(), labels.cpu(), self.max_points)
        class_names = trainer.datamodule.class_names
        for name in self.maps:
            # A forked RNG (PCA draws random projections): the run's randomness is the same
            # with or without pictures.
            with torch.random.fork_rng(devices=[]):
                points = PROJECTIONS[name](features)
            image = draw_feature_map(
                points, labels, class_names, self.size, title=f"{self.split} {name}"
            )
            for write in writers:
                write(f"{self.split}/feature_map_{name}", image, trainer.global_step)


# The class's former name, which configs saved by earlier runs (.hydra/config.yaml) name.
TensorBoardPictures = Pictures
