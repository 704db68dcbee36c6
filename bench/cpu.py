"""CPU benchmark of a SimCLR pre-training step against the machine's ceiling.

    python bench/cpu.py [--batch 256] [--steps 6] [overrides ...]

Prints one ``name: value`` line per figure, all measured in this one run:

- ``step_images_per_s``: full pre-training steps (data loading with augmentation, one forward
  of all views, NT-Xent, backward, optimiser and schedule), through the real DataModule and
  LightningModule built from ``configs/pretrain.yaml`` (digits data, 32 px).
- ``ceiling_images_per_s``: the same encoder's bare forward + backward on ready tensors of the
  same shape and memory format: what the step would cost with free data, loss and optimiser.
- ``step_vs_ceiling``: their ratio (1.0 = the step costs nothing beyond the encoder).
- ``loss_ms_n{256,1024,4096}``: NT-Xent forward + backward, two views of N images, D = 128;
  ``loss_vs_reference_n4096``: its time over a plain masked cross-entropy written here.
- ``aug_views_per_s_{32,96}px``: the per-image augmentation in one thread (one worker);
  ``aug_batched_views_per_s_{32,96}px``: the batched augmentation
  (simclr.data.augment.batch_augment).
- ``peak_mem_mb``: peak resident memory of the process that ran the steps.
- ``channels_last_speedup``: ceiling with channels-last over the default layout.

Each of the step and the ceiling runs in a fresh process, so their memory and threads do not
mix. Extra arguments are Hydra overrides for the step (e.g. ``model.channels_last=false``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

# The steps call training_step outside a Trainer; its logging is a no-op here.
warnings.filterwarnings("ignore", message=".*self.trainer. reference is not registered.*")

ROOT = Path(__file__).resolve().parents[1]


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose(
            "pretrain",
            overrides=[
                "paths.root_dir=/tmp/simclr-bench",
                "paths.output_dir=/tmp/simclr-bench",
                *overrides,
            ],
        )


def step_worker(overrides: list[str], steps: int, queue) -> None:
    """Full pre-training steps through the real DataModule and LightningModule."""
    from simclr.optim import build_optimizer, build_scheduler
    from simclr.tasks.pretrain import build_datamodule, build_model

    cfg = compose(overrides)
    torch.manual_seed(0)
    datamodule, model = build_datamodule(cfg), build_model(cfg)
    datamodule.setup("fit")
    optimizer = build_optimizer(model, batch_size=cfg.data.batch_size, **model.hparams.optimizer)
    scheduler = build_scheduler(
        optimizer, total_steps=1000, steps_per_epoch=4, **model.hparams.scheduler
    )
    model.train()
    loader = datamodule.train_dataloader()  # one loader, as Lightning keeps it

    def batches():
        while True:
            yield from loader

    stream = batches()

    def step():
        batch = datamodule.on_after_batch_transfer(next(stream), 0)
        loss = model.training_step(batch, 0)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    seconds = median_seconds(step, steps, warmup=2)
    queue.put(
        {
            "step_seconds": seconds,
            "batch": cfg.data.batch_size,
            "num_views": cfg.model.num_views,
            "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def ceiling_worker(overrides: list[str], steps: int, queue) -> None:
    """The encoder alone: forward + backward on a ready tensor of all views."""
    from simclr.models import build_backbone

    cfg = compose(overrides)
    backbone = dict(cfg.backbone)
    encoder, _ = build_backbone(image_size=cfg.data.image_size, **backbone)
    size = cfg.data.image_size
    views = cfg.data.batch_size * cfg.model.num_views
    results = {}
    for name, memory_format in (
        ("default", torch.contiguous_format),
        ("channels_last", torch.channels_last),
    ):
        encoder.to(memory_format=memory_format)
        images = torch.randn(views, 3, size, size).contiguous(memory_format=memory_format)

        def step(encoder=encoder, images=images):
            encoder.zero_grad(set_to_none=True)
            encoder(images).mean().backward()

        results[name] = median_seconds(step, steps, warmup=1)
    queue.put(results)


def in_fresh_process(target, *args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def reference_loss(z: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, t: float):
    """Plain NT-Xent for two views: masked logits and cross-entropy on the positive."""
    z = F.normalize(z, dim=1)
    logits = (z @ z.T / t).masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, targets)


def loss_figures(repeats: int) -> dict:
    from simclr.losses import NTXentLoss

    criterion = NTXentLoss(0.5)
    figures = {}
    for n in (256, 1024, 4096):
        z = torch.randn(2, n, 128, requires_grad=True)
        flat = z.detach().reshape(2 * n, 128).requires_grad_()
        mask = torch.eye(2 * n, dtype=torch.bool)
        targets = (torch.arange(2 * n) + n) % (2 * n)

        def ours(z=z):
            criterion(z).loss.backward()

        def theirs(flat=flat, mask=mask, targets=targets):
            reference_loss(flat, mask, targets, 0.5).backward()

        ours_s, theirs_s = median_seconds(ours, repeats), median_seconds(theirs, repeats)
        figures[f"loss_ms_n{n}"] = ours_s * 1e3
        figures[f"reference_loss_ms_n{n}"] = theirs_s * 1e3
        if n == 4096:
            figures["loss_vs_reference_n4096"] = ours_s / theirs_s
    return figures


def augmentation_figures(count: int) -> dict:
    from simclr.data.augment.batch_augment import BatchAugmentation
    from simclr.data.augment.transforms import simclr_augmentation

    figures = {}
    threads = torch.get_num_threads()
    for size, options in (
        (32, {"color_strength": 0.5, "blur_prob": 0.0}),
        (96, {"color_strength": 1.0, "blur_prob": 0.5}),
    ):
        images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8)
        per_image = simclr_augmentation(size, [0.5] * 3, [0.25] * 3, **options)
        batched = BatchAugmentation(size, [0.5] * 3, [0.25] * 3, **options)
        torch.set_num_threads(1)  # one data-loader worker
        seconds = median_seconds(lambda f=per_image, xs=images: [f(x) for x in xs], 3)
        figures[f"aug_views_per_s_{size}px"] = count / seconds
        torch.set_num_threads(threads)
        seconds = median_seconds(lambda f=batched, xs=images: f(xs), 3)
        figures[f"aug_batched_views_per_s_{size}px"] = count / seconds
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="images per step (x 2 views)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (median)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the step")
    args = parser.parse_args()
    overrides = [
        "data=digits",
        "backbone=resnet18",
        "data.image_size=32",
        f"data.batch_size={args.batch}",
        *args.overrides,
    ]

    step = in_fresh_process(step_worker, overrides, args.steps)
    cfg = compose(overrides)
    ceiling = in_fresh_process(ceiling_worker, overrides, args.steps)
    layout = "channels_last" if cfg.model.channels_last else "default"
    figures = {
        "step_images_per_s": step["batch"] / step["step_seconds"],
        "ceiling_images_per_s": args.batch / ceiling[layout],
    }
    figures["step_vs_ceiling"] = figures["step_images_per_s"] / figures["ceiling_images_per_s"]
    figures["channels_last_speedup"] = ceiling["default"] / ceiling["channels_last"]
    figures.update(loss_figures(repeats=5))
    figures.update(augmentation_figures(count=512))
    figures["peak_mem_mb"] = step["peak_mem_mb"]
    for name, value in figures.items():
        print(f"{name}: {value:.4g}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
