"""Encoder quality at equal budget: this project against a loop built from lightly's parts.

    python bench/quality.py [--seeds 3] [--experiment digits_quick] [overrides ...]
    python bench/quality.py --ckpt logs/pretrain/runs/<time>/checkpoints/last.ckpt

Both pre-trainings start from the same config (``experiment=digits_quick`` and any Hydra
overrides given): the same encoder (this project's backbone registry), data split, batch,
number of optimiser steps, learning rate and its warm-up + cosine schedule, temperature,
weight decay and augmentation parameters.

- ours: ``simclr.tasks.pretrain.run(cfg)``, the function ``train.py`` calls (monitors and pictures
  off, they do not change the weights), the encoder read back from ``last.ckpt``;
- peer: a plain PyTorch loop over lightly's public components (``SimCLRTransform``,
  ``SimCLRProjectionHead``, ``NTXentLoss``, ``LARS``, ``get_weight_decay_parameters``), one
  forward per view as lightly's examples do. lightly comes from the ``bench`` extra.

One evaluator scores every encoder on the digits test split, with the deterministic
evaluation transform: weighted k-NN (k = 200, T = 0.1, cosine similarity, bank = the
training split; Wu et al., 2018) and a logistic-regression classifier on standardised
features (statistics of the training split) trained on 10 labels per class, the mean over 5
draws of those labels. Raw pixels (at the run's image size and at 32 px, the better of the
two) and a randomly initialised encoder are the floors.

Prints ``name: value`` lines; means over seeds with their standard deviation (``_std``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
KNN_K, KNN_TEMPERATURE = 200, 0.1
# The raw-pixel floor is also scored at this size (the digits config's), whatever the run's.
RAW_PIXELS_SIZE = 32
LABELS_PER_CLASS, LABEL_DRAWS = 10, 5
# Monitors and pictures cost time and do not touch the weights (they train on detached
# features with their own optimiser); the checkpoint callback stays, it gives us last.ckpt.
QUIET = [
    "logger=csv",
    "callbacks.progress_bar=null",
    "callbacks.knn=null",
    "callbacks.linear_probe=null",
    "callbacks.pictures=null",
]


def compose(overrides: list[str], output_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose(
            "pretrain",
            overrides=[*overrides, f"paths.root_dir={ROOT}", f"paths.output_dir={output_dir}"],
        )


# --- the evaluator -----------------------------------------------------------------------


def normalised(images: Tensor, mean, std) -> Tensor:
    """uint8 ``(N, 3, S, S)`` as the evaluation transform gives them (images already at S)."""
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


@torch.no_grad()
def encode(encoder: nn.Module, images: Tensor, batch: int = 512) -> Tensor:
    encoder.eval()
    return torch.cat([encoder(images[i : i + batch]) for i in range(0, len(images), batch)])


def knn_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor) -> float:
    """Weighted k-NN: the k most cosine-similar training features vote with exp(sim / T)."""
    bank = nn.functional.normalize(train_x.float(), dim=1)
    queries = nn.functional.normalize(test_x.float(), dim=1)
    similarity, index = (queries @ bank.T).topk(min(KNN_K, len(bank)), dim=1)
    votes = torch.zeros(len(queries), int(train_y.max()) + 1)
    votes.scatter_add_(1, train_y[index], (similarity / KNN_TEMPERATURE).exp())
    return (votes.argmax(1) == test_y).float().mean().item()


def linear_few_labels(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor) -> float:
    """Logistic regression on standardised features from 10 labels per class (mean of 5
    draws of the labelled images)."""
    from sklearn.linear_model import LogisticRegression

    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_z, test_z = ((train_x - mean) / std).numpy(), ((test_x - mean) / std).numpy()
    labels = train_y.numpy()
    scores = []
    for draw in range(LABEL_DRAWS):
        rng = np.random.default_rng(draw)
        chosen = np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == c), LABELS_PER_CLASS, replace=False)
                for c in np.unique(labels)
            ]
        )
        classifier = LogisticRegression(max_iter=5000).fit(train_z[chosen], labels[chosen])
        scores.append(float((classifier.predict(test_z) == test_y.numpy()).mean()))
    return statistics.mean(scores)


class Evaluator:
    """The digits train (bank, labelled pool) and test splits of a composed config."""

    def __init__(self, cfg):
        from simclr.tasks.pretrain import build_datamodule

        datamodule = build_datamodule(cfg)
        splits = datamodule.load_splits()
        self.train_images, self.test_images = splits.train.images, splits.test.images
        self.train_y, self.test_y = splits.train.labels, splits.test.labels
        self.mean, self.std = datamodule.mean, datamodule.std
        self.splits = splits

    def score(self, features) -> dict[str, float]:
        """``features``: normalised images ``(N, 3, S, S)`` -> features ``(N, F)``."""
        train_x = features(normalised(self.train_images, self.mean, self.std)).flatten(1)
        test_x = features(normalised(self.test_images, self.mean, self.std)).flatten(1)
        return {
            "knn": knn_accuracy(train_x, self.train_y, test_x, self.test_y),
            "linear10": linear_few_labels(train_x, self.train_y, test_x, self.test_y),
        }

    def score_encoder(self, encoder: nn.Module) -> dict[str, float]:
        return self.score(lambda images: encode(encoder, images))


def raw_pixel_floor(evaluator: Evaluator, base: list[str], scratch: Path) -> dict[str, float]:
    """Raw pixels scored at the config's image size and at the digits config's 32 px, each
    measure the better of the two: an encoder trained on smaller images must beat the pixels
    at the larger size too."""
    evaluators = {evaluator.train_images.shape[-1]: evaluator}
    if RAW_PIXELS_SIZE not in evaluators:
        overrides = [*base, f"data.image_size={RAW_PIXELS_SIZE}"]
        evaluators[RAW_PIXELS_SIZE] = Evaluator(compose(overrides, scratch / "raw_pixels"))
    best: dict[str, float] = {}
    for size, sized in sorted(evaluators.items()):
        for name, value in sized.score(lambda images: images).items():
            report(f"raw_pixels_{size}px_{name}", value)
            best[name] = max(best.get(name, 0.0), value)
    return best


# --- the two pre-trainings ---------------------------------------------------------------


def load_encoder(path: Path | str) -> nn.Module:
    """The encoder of a pre-training checkpoint or an export, its weights loaded strictly."""
    from simclr.models import PretrainedEncoder

    return PretrainedEncoder.read(path).build()[0]


def train_ours(cfg) -> tuple[nn.Module, dict]:
    from simclr.tasks.pretrain import run

    metrics = run(cfg)
    checkpoint = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    encoder = load_encoder(checkpoint)
    steps = torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
    return encoder, {"loss": metrics["train/loss_epoch"], "steps": steps}


class PILImages(torch.utils.data.Dataset):
    """The uint8 training images as PIL images, through ``transform``."""

    def __init__(self, images: Tensor, transform):
        from PIL import Image

        self.images = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index])


def peer_transform(cfg):
    """lightly's SimCLRTransform with this config's augmentation parameters."""
    from lightly.transforms import SimCLRTransform

    augment = cfg.data.augment
    if tuple(augment.crop_ratio) != (0.75, 4 / 3) or augment.crop_scale[1] != 1.0:
        raise SystemExit("lightly's SimCLRTransform has no crop ratio or maximum crop scale")
    return SimCLRTransform(
        input_size=cfg.data.image_size,
        cj_prob=augment.color_prob,
        cj_strength=augment.color_strength,
        min_scale=augment.crop_scale[0],
        random_gray_scale=augment.grayscale_prob,
        gaussian_blur=augment.blur_prob,
        hf_prob=augment.flip_prob,
        rr_prob=augment.get("rotation_prob", 0.0),
        rr_degrees=augment.get("rotation_degrees") or None,
        normalize={"mean": list(cfg.data.mean), "std": list(cfg.data.std)},
    )


def train_peer(cfg, train_images: Tensor, seed: int) -> tuple[nn.Module, dict]:
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.models.utils import get_weight_decay_parameters
    from lightly.utils.lars import LARS
    from omegaconf import OmegaConf

    from simclr.models import build_backbone
    from simclr.optim import scaled_learning_rate, warmup_cosine_factor

    torch.manual_seed(seed)
    np.random.seed(seed)
    if cfg.optimizer.name != "lars":
        raise SystemExit("the peer loop uses lightly's LARS: use optimizer=lars")
    backbone_args = OmegaConf.to_container(cfg.backbone, resolve=True)
    encoder, feature_dim = build_backbone(image_size=cfg.data.image_size, **backbone_args)
    head_cfg = cfg.model.head
    head = SimCLRProjectionHead(
        feature_dim,
        head_cfg.hidden_dim or feature_dim,
        head_cfg.output_dim,
        num_layers=head_cfg.num_layers,
        batch_norm=head_cfg.batch_norm,
    )
    model = nn.Sequential(encoder, head)
    batch = cfg.data.batch_size
    decayed, not_decayed = get_weight_decay_parameters([model])
    optimizer = LARS(
        [
            {"params": decayed, "weight_decay": cfg.optimizer.weight_decay},
            {"params": not_decayed, "weight_decay": 0.0},
        ],
        lr=scaled_learning_rate(cfg.optimizer.lr, batch, cfg.optimizer.lr_scaling),
        momentum=cfg.optimizer.momentum,
        trust_coefficient=cfg.optimizer.trust_coefficient,
    )
    workers = cfg.data.num_workers if cfg.data.num_workers is not None else 1
    loader = torch.utils.data.DataLoader(
        PILImages(train_images, peer_transform(cfg)),
        batch_size=batch,
        shuffle=True,
        drop_last=cfg.data.drop_last,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    epochs = cfg.trainer.max_epochs
    total = epochs * len(loader)
    warmup = min(total, round(cfg.scheduler.warmup_epochs * len(loader)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine_factor(step, warmup, total, cfg.scheduler.min_lr_ratio),
    )
    criterion = NTXentLoss(temperature=cfg.model.temperature)
    model.train()
    for _ in range(epochs):
        losses = []
        for views in loader:
            x0, x1 = views[:2]
            loss = criterion(model(x0), model(x1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    return encoder, {"loss": statistics.mean(losses), "steps": total}


# --- the report --------------------------------------------------------------------------


def mean_and_spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def report(name: str, value: float) -> None:
    print(f"{name}: {value:.4f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--experiment", default="digits_quick")
    parser.add_argument("--only", choices=["ours", "peer", "both"], default="both")
    parser.add_argument("--ckpt", help="only score this checkpoint or exported encoder")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both pre-trainings")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("simclr").setLevel(logging.WARNING)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        base = [f"experiment={args.experiment}", *QUIET, *args.overrides]
        if args.ckpt:  # the checkpoint's images are scored at the size it was trained at
            from simclr.models import PretrainedEncoder

            pretrained = PretrainedEncoder.read(args.ckpt)
            base.append(f"data.image_size={pretrained.image_size}")
        cfg = compose(base, Path(scratch) / "compose")
        evaluator = Evaluator(cfg)
        floors = {"raw_pixels": raw_pixel_floor(evaluator, base, Path(scratch))}
        if args.ckpt:
            scores = evaluator.score_encoder(pretrained.build()[0])
            for name, value in scores.items():
                report(name, value)
            for name, value in floors["raw_pixels"].items():
                report(f"raw_pixels_{name}", value)
                report(f"{name}_vs_raw_pixels", scores[name] / value)
            return 0
        from omegaconf import OmegaConf

        from simclr.models import PretrainedEncoder

        torch.manual_seed(0)
        backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
        random_encoder, _ = PretrainedEncoder.fresh(backbone, cfg.data.image_size).build()
        floors["random_encoder"] = evaluator.score_encoder(random_encoder)
        for floor, scores in floors.items():
            for name, value in scores.items():
                report(f"{floor}_{name}", value)
        results: dict[str, dict[str, list[float]]] = {"ours": {}, "peer": {}}
        runs = ["ours", "peer"] if args.only == "both" else [args.only]
        for seed in range(args.seeds):
            for who in runs:
                run_cfg = compose([*base, f"seed={seed}"], Path(scratch) / f"{who}_{seed}")
                if who == "ours":
                    encoder, info = train_ours(run_cfg)
                else:
                    encoder, info = train_peer(run_cfg, evaluator.splits.train.images, seed)
                scores = {**evaluator.score_encoder(encoder), **info}
                prefix = "" if who == "ours" else "peer_"
                for name, value in scores.items():
                    results[who].setdefault(name, []).append(value)
                    report(f"seed{seed}_{prefix}{name}", value)
        for who in runs:
            prefix = "" if who == "ours" else "peer_"
            for name, values in results[who].items():
                mean, spread = mean_and_spread(values)
                report(f"{prefix}{name}", mean)
                report(f"{prefix}{name}_std", spread)
        raw = floors["raw_pixels"]
        for name in ("knn", "linear10"):
            if "ours" in runs and "peer" in runs:
                ratio = statistics.mean(results["ours"][name]) / statistics.mean(
                    results["peer"][name]
                )
                report(f"{name}_vs_peer", ratio)
            if "ours" in runs:
                report(f"{name}_vs_raw_pixels", statistics.mean(results["ours"][name]) / raw[name])
    report("minutes", (time.perf_counter() - started) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
