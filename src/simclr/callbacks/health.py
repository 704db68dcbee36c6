"""Training health without labels: what the representation looks like on a fixed batch of
pre-training images, logged every ``every_n_epochs`` epochs (and at the last).

- ``health/rank``: RankMe (Garrido et al., 2023), the effective rank of the representations
  h: ``exp`` of the entropy of their normalised singular values. It falls towards 1 when the
  encoder collapses (every image the same vector) and rises with the number of directions
  the representation uses, at most ``min(images, feature_dim)``.
- ``health/alignment``: the mean squared distance between the L2-normalised projections z of
  two views of one image (Wang and Isola, 2020): 0 when the views agree, up to 4.
- ``health/uniformity``: ``log`` of the mean of ``exp(-2 ||z_i - z_j||^2)`` over pairs of
  different images (Wang and Isola, 2020): 0 when every image maps to one point (collapse),
  down to about -4 when the projections spread evenly over the sphere.

A healthy run lowers alignment and uniformity together while the rank stays high; alignment
near 0 with uniformity near 0 is collapse. The views are drawn by the pipeline that trains
(:meth:`preview_views` of the DataModule), with a fixed seed, so epochs compare.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from simclr.callbacks.epochs import epoch_due

VIEW_SEED = 0


def effective_rank(features: Tensor, eps: float = 1e-7) -> float:
    """RankMe of ``(N, F)`` features: ``exp(-sum p_k log p_k)`` with ``p_k`` the singular
    values divided by their sum (plus ``eps``, as the paper)."""
    singular = torch.linalg.svdvals(features.double())
    p = singular / (singular.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(z1: Tensor, z2: Tensor) -> float:
    """Mean squared distance between the normalised ``z1[i]`` and ``z2[i]``."""
    z1, z2 = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    return float((z1 - z2).pow(2).sum(dim=1).mean())


def uniformity(z: Tensor, t: float = 2.0) -> float:
    """``log`` of the mean Gaussian potential ``exp(-t ||z_i - z_j||^2)`` over pairs i < j of
    normalised ``z``."""
    z = F.normalize(z.double(), dim=1)
    return float(torch.pdist(z).pow(2).mul(-t).exp().mean().log())


class TrainingHealth(L.Callback):
    """Logs ``health/rank``, ``health/alignment`` and ``health/uniformity`` (see the module
    docstring) on ``num_images`` pre-training images, every ``every_n_epochs`` epochs."""

    def __init__(self, num_images: int = 256, every_n_epochs: int = 1):
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs

    @torch.no_grad()
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(VIEW_SEED)
            views = trainer.datamodule.preview_views(self.num_images)[:2]
        was_training = pl_module.training
        pl_module.eval()
        try:
            h = [pl_module(view.to(pl_module.device)) for view in views]
            z = [pl_module.projection(each) for each in h]
        finally:
            pl_module.train(was_training)
        return {
            "health/rank": effective_rank(h[0].float().cpu()),
            "health/alignment": alignment(z[0].cpu(), z[1].cpu()),
            "health/uniformity": uniformity(z[0].cpu()),
        }

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not epoch_due(trainer, self.every_n_epochs):
            return
        metrics = self.measure(trainer, pl_module)
        for name, value in metrics.items():
            pl_module.log(name, value, on_epoch=True, rank_zero_only=True)
