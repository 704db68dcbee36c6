"""Pictures in TensorBoard during pre-training, drawn with torch alone (no plotting library).

- ``views/pairs`` at the start of training: a grid of augmented views, one row per view
  (each column one image), so the augmentation's strength can be judged at a glance.
- ``val/feature_map`` every ``every_n_epochs`` epochs and at the last: the validation
  representations projected on their first two principal components, one dot per image,
  coloured by label (classes that separate here are what the monitors measure).
"""

from __future__ import annotations

import colorsys

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torchvision.utils import make_grid

from simclr.callbacks.epochs import EVERY_N_EPOCHS, epoch_due
from simclr.callbacks.monitors import embed


def palette(num_classes: int) -> Tensor:
    """``(num_classes, 3)`` distinct colours in [0, 1] (hues evenly spaced)."""
    colours = [colorsys.hsv_to_rgb(i / num_classes, 0.85, 0.9) for i in range(num_classes)]
    return torch.tensor(colours, dtype=torch.float32)


def pca_2d(features: Tensor) -> Tensor:
    """``(N, F)`` -> ``(N, 2)``: coordinates on the two leading principal components."""
    centred = features.float() - features.float().mean(0)
    _, _, v = torch.pca_lowrank(centred, q=min(2, *centred.shape), center=False)
    coords = centred @ v[:, :2]
    if coords.shape[1] < 2:
        coords = torch.cat([coords, torch.zeros_like(coords)], 1)
    return coords


def scatter_image(points: Tensor, labels: Tensor, size: int = 256, dot: int = 2) -> Tensor:
    """A white ``(3, size, size)`` image with a ``(2*dot+1)``-px square per point, coloured by
    its label; points are scaled to fill the image with a margin."""
    image = torch.ones(3, size, size)
    lo, hi = points.min(0).values, points.max(0).values
    scaled = (points - lo) / (hi - lo).clamp_min(1e-12)
    margin = dot + 2
    pixels = (margin + scaled * (size - 1 - 2 * margin)).round().long()
    colours = palette(int(labels.max()) + 1)
    for (x, y), label in zip(pixels.tolist(), labels.tolist(), strict=True):
        row = size - 1 - y  # y grows upwards
        image[:, row - dot : row + dot + 1, x - dot : x + dot + 1] = colours[label, :, None, None]
    return image


def _image_loggers(trainer: L.Trainer) -> list:
    return [lg.experiment for lg in trainer.loggers if hasattr(lg.experiment, "add_image")]


class TensorBoardPictures(Callback):
    """Draws the view grid and the feature map (see the module docstring) into every logger
    that takes images (TensorBoard); does nothing without one.

    Args:
        num_images: images (columns) in the view grid.
        every_n_epochs: how often the feature map is drawn (and at the last epoch).
        split: the labelled split mapped.
    """

    def __init__(self, num_images: int = 8, every_n_epochs: int = 10, split: str = "val"):
        self.num_images = num_images
        self.every_n_epochs = EVERY_N_EPOCHS.check(every_n_epochs)
        self.split = split

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = _image_loggers(trainer)
        if not writers:
            return
        # Drawn with a forked RNG, so the run's randomness (data order, augmentations) is the
        # same with or without pictures.
        with torch.random.fork_rng(devices=[]):
            rows = trainer.datamodule.preview_views(self.num_images)  # V rows of n views
        grid = make_grid(
            torch.cat(rows), nrow=len(rows[0]), normalize=True, scale_each=True, pad_value=1
        )
        for writer in writers:
            writer.add_image("views/pairs", grid, trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = _image_loggers(trainer)
        if not writers or not epoch_due(trainer, self.every_n_epochs):
            return
        loader = trainer.datamodule.labelled_dataloader(self.split)
        features, labels = embed(trainer, pl_module.encoder, loader)
        image = scatter_image(pca_2d(features.cpu()), labels.cpu())
        for writer in writers:
            writer.add_image(f"{self.split}/feature_map", image, trainer.global_step)
