"""Encoder quality at equal budget: this project against a loop built from lightly's parts.

    python bench/quality.py [--seeds 3] [--split val] [--jobs 2] [--check] [overrides ...]
    python bench/quality.py --split test --check          (what ``make quality`` runs)
    python bench/quality.py --ckpt logs/pretrain/runs/<time>/checkpoints/last.ckpt

Every pre-training starts from the same config (``experiment=digits_quick`` and any Hydra
overrides given): the same encoder (this project's backbone registry), data split, batch,
number of optimiser steps, learning rate and its warm-up + cosine schedule, temperature,
weight decay and augmentation parameters. The runs, each with every seed:

- ``ours``: ``simclr.tasks.pretrain.run(cfg)``, the function ``train.py`` calls (monitors and
  pictures off, they do not change the weights), the encoder read back from ``last.ckpt``;
- ``peer``: a plain PyTorch loop over lightly's public components (``SimCLRTransform``,
  ``SimCLRProjectionHead``, ``NTXentLoss``, ``LARS``, ``get_weight_decay_parameters``), one
  forward per view as lightly's examples do. lightly comes from the ``bench`` extra;
- ``ours_view_passes``: ours with ``model.view_passes=true`` (one encoder pass per view: the
  peer's BatchNorm statistics), which separates the implementation from that recipe choice;
- ``ours_memory``: ours with SimCLR v2's memory buffer of negatives (``model.memory``).

Each pre-training runs in its own process with one thread, ``--jobs`` at a time.

One evaluator scores every encoder on one split (``--split``): ``val`` for screening recipes
(the default), ``test`` once, for the recipe finally chosen. The training split is the k-NN
bank and the labelled pool. The protocols, with the deterministic evaluation transform:
weighted k-NN (k = 20 and 200, T = 0.1, cosine similarity; Wu et al., 2018) and a
logistic-regression classifier on standardised features (statistics of the training split)
trained on 1, 5 and 10 labels per class, the mean over 5 draws of those labels. Raw pixels
(at the run's image size and at 32 px, the better of the two) and a randomly initialised
encoder are the floors.

Prints ``name: value`` lines; means over seeds with their standard deviation (``_std``).
``--check`` exits 1 when ours falls below the peer by more than two standard errors (of the
difference of the means) on any protocol, or below raw pixels on a few-label linear protocol.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
KNN_KS, KNN_TEMPERATURE = (20, 200), 0.1
# The raw-pixel floor is also scored at this size (the digits config's), whatever the run's.
RAW_PIXELS_SIZE = 32
LABELS_PER_CLASS, LABEL_DRAWS = (1, 5, 10), 5
PROTOCOLS = [*(f"knn{k}" for k in KNN_KS), *(f"linear{n}" for n in LABELS_PER_CLASS)]
# The pre-trainings: how each trains, and its overrides on top of the shared config.
RUNS = {
    "ours": ("ours", []),
    "peer": ("peer", []),
    "ours_view_passes": ("ours", ["model.view_passes=true"]),
    # SimCLR v2's memory buffer: 1,024 keys from the momentum encoder (0.999), the keys of the
    # last 8 steps of 64 images x 2 views (an epoch holds 19 steps).
    "ours_memory": ("ours", ["model.memory.size=1024"]),
}
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


def knn_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, k: int) -> float:
    """Weighted k-NN: the k most cosine-similar training features vote with exp(sim / T)."""
    bank = nn.functional.normalize(train_x.float(), dim=1)
    queries = nn.functional.normalize(test_x.float(), dim=1)
    similarity, index = (queries @ bank.T).topk(min(k, len(bank)), dim=1)
    votes = torch.zeros(len(queries), int(train_y.max()) + 1)
    votes.scatter_add_(1, train_y[index], (similarity / KNN_TEMPERATURE).exp())
    return (votes.argmax(1) == test_y).float().mean().item()


def linear_few_labels(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, per_class: int
) -> float:
    """Logistic regression on standardised features from ``per_class`` labels per class (the
    mean over 5 draws of the labelled images)."""
    from sklearn.linear_model import LogisticRegression

    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_z, test_z = ((train_x - mean) / std).numpy(), ((test_x - mean) / std).numpy()
    labels = train_y.numpy()
    scores = []
    for draw in range(LABEL_DRAWS):
        rng = np.random.default_rng(draw)
        chosen = np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                for c in np.unique(labels)
            ]
        )
        classifier = LogisticRegression(max_iter=5000).fit(train_z[chosen], labels[chosen])
        scores.append(float((classifier.predict(test_z) == test_y.numpy()).mean()))
    return statistics.mean(scores)


class Evaluator:
    """The digits training split (k-NN bank, labelled pool) and the scored split (``val`` or
    ``test``) of a composed config."""

    def __init__(self, cfg, split: str):
        from simclr.tasks.pretrain import build_datamodule

        datamodule = build_datamodule(cfg)
        splits = datamodule.load_splits()
        scored = getattr(splits, split)
        self.train_images, self.scored_images = splits.train.images, scored.images
        self.train_y, self.scored_y = splits.train.labels, scored.labels
        self.mean, self.std = datamodule.labelled.mean, datamodule.labelled.std

    def score(self, features) -> dict[str, float]:
        """``features``: normalised images ``(N, 3, S, S)`` -> features ``(N, F)``."""
        train_x = features(normalised(self.train_images, self.mean, self.std)).flatten(1)
        x = features(normalised(self.scored_images, self.mean, self.std)).flatten(1)
        data = (train_x, self.train_y, x, self.scored_y)
        scores = {f"knn{k}": knn_accuracy(*data, k=k) for k in KNN_KS}
        for n in LABELS_PER_CLASS:
            scores[f"linear{n}"] = linear_few_labels(*data, per_class=n)
        return scores

    def score_encoder(self, encoder: nn.Module) -> dict[str, float]:
        return self.score(lambda images: encode(encoder, images))


def raw_pixel_floor(
    evaluator: Evaluator, base: list[str], scratch: Path, split: str
) -> dict[str, float]:
    """Raw pixels scored at the config's image size and at the digits config's 32 px, each
    measure the better of the two: an encoder trained on smaller images must beat the pixels
    at the larger size too."""
    evaluators = {evaluator.train_images.shape[-1]: evaluator}
    if RAW_PIXELS_SIZE not in evaluators:
        overrides = [*base, f"data.image_size={RAW_PIXELS_SIZE}"]
        evaluators[RAW_PIXELS_SIZE] = Evaluator(compose(overrides, scratch / "raw_pixels"), split)
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


# --- one pre-training in its own process ---------------------------------------------------


def train_and_score(args: argparse.Namespace, run: str, seed: int) -> dict[str, float]:
    """Pre-train ``run`` with ``seed`` and score its encoder (what a ``--worker`` does)."""
    kind, extra = RUNS[run]
    with tempfile.TemporaryDirectory() as scratch:
        base = shared_overrides(args)
        evaluator = Evaluator(compose(base, Path(scratch) / "compose"), args.split)
        cfg = compose([*base, *extra, f"seed={seed}"], Path(scratch) / "run")
        started = time.perf_counter()
        if kind == "ours":
            encoder, info = train_ours(cfg)
        else:
            encoder, info = train_peer(cfg, evaluator.train_images, seed)
        info["minutes"] = (time.perf_counter() - started) / 60
        return {**evaluator.score_encoder(encoder), **info}


def run_in_processes(args: argparse.Namespace, scratch: Path) -> dict[str, list[dict]]:
    """Every (run, seed) pre-training in its own one-thread process, ``args.jobs`` at a time;
    the results in seed order for each run."""
    queue = [(run, seed) for seed in range(args.seeds) for run in args.runs]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: dict[tuple[str, int], tuple[subprocess.Popen, Path]] = {}
    results: dict[str, dict[int, dict]] = {run: {} for run in args.runs}
    forwarded = ["--split", args.split, "--experiment", args.experiment, *args.overrides]
    while queue or running:
        while queue and len(running) < args.jobs:
            run, seed = queue.pop(0)
            out = scratch / f"{run}_{seed}.json"
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                f"{run}:{seed}",
                "--out",
                str(out),
            ]
            running[run, seed] = (subprocess.Popen([*command, *forwarded], env=env), out)
            print(f"started {run} seed {seed}", flush=True)
        time.sleep(1)
        for (run, seed), (process, out) in list(running.items()):
            if process.poll() is None:
                continue
            del running[run, seed]
            if process.returncode != 0:
                for other, _ in running.values():
                    other.kill()
                raise SystemExit(f"{run} seed {seed} failed (exit {process.returncode})")
            results[run][seed] = json.loads(out.read_text())
            print(f"finished {run} seed {seed}", flush=True)
    return {run: [by_seed[seed] for seed in sorted(by_seed)] for run, by_seed in results.items()}


# --- the report and the check --------------------------------------------------------------


def mean_and_spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def report(name: str, value: float) -> None:
    print(f"{name}: {value:.4f}", flush=True)


def shortfalls(
    ours: dict[str, list[float]], peer: dict[str, list[float]], raw_pixels: dict[str, float]
) -> list[str]:
    """Why ``--check`` fails: each protocol where ours is below the peer by more than two
    standard errors of the difference of the means, and each few-label linear protocol where
    ours is below raw pixels. Empty when the check passes."""
    failures = []
    for protocol in PROTOCOLS:
        if peer.get(protocol):
            (a, sa), (b, sb) = mean_and_spread(ours[protocol]), mean_and_spread(peer[protocol])
            error = math.hypot(
                sa / math.sqrt(len(ours[protocol])), sb / math.sqrt(len(peer[protocol]))
            )
            if a < b - 2 * error:
                failures.append(
                    f"{protocol}: ours {a:.4f} < peer {b:.4f} - 2 x {error:.4f} (standard error)"
                )
        if protocol.startswith("linear") and statistics.mean(ours[protocol]) < raw_pixels[protocol]:
            failures.append(
                f"{protocol}: ours {statistics.mean(ours[protocol]):.4f} < raw pixels "
                f"{raw_pixels[protocol]:.4f}"
            )
    return failures


def shared_overrides(args: argparse.Namespace) -> list[str]:
    return [f"experiment={args.experiment}", *QUIET, *args.overrides]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--experiment", default="digits_quick")
    parser.add_argument(
        "--split",
        choices=["val", "test"],
        default="val",
        help="the split scored: val to screen recipes, test once for the recipe chosen",
    )
    parser.add_argument(
        "--runs",
        default=",".join(RUNS),
        help=f"comma-separated pre-trainings, from {', '.join(RUNS)} (default: all)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="pre-trainings at a time")
    parser.add_argument("--check", action="store_true", help="exit 1 when ours falls behind")
    parser.add_argument("--ckpt", help="only score this checkpoint or exported encoder")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every pre-training")
    args = parser.parse_args(argv)
    args.runs = [run for run in args.runs.split(",") if run]
    unknown = sorted(set(args.runs) - set(RUNS))
    if unknown or not args.runs:
        parser.error(f"--runs: unknown {unknown}; choose from {', '.join(RUNS)}")
    if args.check and not {"ours", "peer"} <= set(args.runs):
        parser.error("--check compares ours with the peer: --runs must include both")
    if args.check and args.seeds < 2:
        parser.error("--check needs at least 2 seeds (a standard error)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("simclr").setLevel(logging.WARNING)
    if args.worker:
        torch.set_num_threads(1)
        run, seed = args.worker.split(":")
        Path(args.out).write_text(json.dumps(train_and_score(args, run, int(seed))))
        return 0
    started = time.perf_counter()
    print(f"split: {args.split}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        base = shared_overrides(args)
        if args.ckpt:  # the checkpoint's images are scored at the size it was trained at
            from simclr.models import PretrainedEncoder

            pretrained = PretrainedEncoder.read(args.ckpt)
            base.append(f"data.image_size={pretrained.image_size}")
        cfg = compose(base, Path(scratch) / "compose")
        evaluator = Evaluator(cfg, args.split)
        raw_pixels = raw_pixel_floor(evaluator, base, Path(scratch), args.split)
        if args.ckpt:
            scores = evaluator.score_encoder(pretrained.build()[0])
            for name, value in scores.items():
                report(name, value)
                report(f"raw_pixels_{name}", raw_pixels[name])
                report(f"{name}_vs_raw_pixels", value / raw_pixels[name])
            return 0
        from omegaconf import OmegaConf

        from simclr.models import PretrainedEncoder

        torch.manual_seed(0)
        backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
        random_encoder, _ = PretrainedEncoder.fresh(backbone, cfg.data.image_size).build()
        floors = {
            "raw_pixels": raw_pixels,
            "random_encoder": evaluator.score_encoder(random_encoder),
        }
        for floor, scores in floors.items():
            for name, value in scores.items():
                report(f"{floor}_{name}", value)
        runs = run_in_processes(args, Path(scratch))
    results: dict[str, dict[str, list[float]]] = {}
    for run, per_seed in runs.items():
        prefix = "" if run == "ours" else f"{run}_"
        for seed, scores in enumerate(per_seed):
            for name, value in scores.items():
                results.setdefault(run, {}).setdefault(name, []).append(value)
                report(f"seed{seed}_{prefix}{name}", value)
    for run, by_name in results.items():
        prefix = "" if run == "ours" else f"{run}_"
        for name, values in by_name.items():
            mean, spread = mean_and_spread(values)
            report(f"{prefix}{name}", mean)
            report(f"{prefix}{name}_std", spread)
    for protocol in PROTOCOLS:
        ours = statistics.mean(results[args.runs[0]][protocol])
        for run in args.runs[1:]:
            report(
                f"{protocol}_{args.runs[0]}_vs_{run}",
                ours / statistics.mean(results[run][protocol]),
            )
        report(f"{protocol}_{args.runs[0]}_vs_raw_pixels", ours / raw_pixels[protocol])
    report("minutes", (time.perf_counter() - started) / 60)
    if args.check:
        failures = shortfalls(results["ours"], results["peer"], raw_pixels)
        for failure in failures:
            print(f"check failed: {failure}", flush=True)
        print(f"check: {'FAIL' if failures else 'pass'}", flush=True)
        return 1 if failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
