"""GPU benchmark: pre-training images/s through the real Trainer, for a lent GPU machine.

    python bench/gpu.py [--steps 20] [--device cuda]    (bench/gpu.sh runs it, < 8 minutes)

For ResNet-50 at 224 px (batch 256) and ResNet-18 at 32 px (batch 512), each with and
without accelerator-side augmentation, it trains ``--steps`` steps on in-memory random
images (``data=fake``) and prints ``name: value`` lines:

- ``<backbone>_<size>px_<precision>_<layout>_<aug>_images_per_s``: median over steps of
  batch / time between consecutive ends of training batches (so data loading counts);
- ``peak_gpu_mem_mb`` per configuration.

``--device cpu --steps 2 --small`` checks that the script runs, on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import hydra
import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]


class StepTimer(L.Callback):
    """Wall-clock time between consecutive training-batch ends."""

    def __init__(self):
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())

    def median_step(self, warmup: int) -> float:
        steps = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)][warmup:]
        return statistics.median(steps)


def measure(overrides: list[str], steps: int, warmup: int) -> dict:
    from hydra import compose, initialize_config_dir

    from simclr.tasks.pretrain import build_datamodule, build_model

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "pretrain",
            overrides=[
                "paths.root_dir=/tmp/simclr-bench",
                "paths.output_dir=/tmp/simclr-bench",
                "callbacks=none",
                "~logger",
                *overrides,
            ],
        )
    torch.manual_seed(0)
    datamodule, model = build_datamodule(cfg), build_model(cfg)
    timer = StepTimer()
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, datamodule=datamodule)
    seconds = timer.median_step(warmup)
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    return {"images_per_s": cfg.data.batch_size / seconds, "peak_gpu_mem_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--small", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args()
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    setups = [("resnet50", 224, 256), ("resnet18", 32, 512)]
    variants = [("bf16-mixed", True), ("32-true", False)]
    if args.small:
        setups = [("resnet18_slim", 32, 16)]
        variants = [("bf16-mixed", True)]
    total = args.steps + args.warmup + 2
    for backbone, size, batch in setups:
        for precision, channels_last in variants:
            for on_device in (True, False):
                overrides = [
                    "data=fake",
                    f"data.image_size={size}",
                    f"data.batch_size={batch}",
                    f"data.options.num_train={batch * total}",
                    f"data.num_workers={args.workers}",
                    f"data.augment_on_device={str(on_device).lower()}",
                    "data/augment=" + ("large" if size >= 96 else "small"),
                    f"backbone={backbone}",
                    f"trainer.accelerator={accelerator}",
                    f"trainer.precision={precision}",
                    f"trainer.max_steps={total}",
                    f"model.channels_last={str(channels_last).lower()}",
                ]
                result = measure(overrides, total, args.warmup)
                layout = "channels_last" if channels_last else "default"
                aug = "device_aug" if on_device else "worker_aug"
                name = f"{backbone}_{size}px_{precision}_{layout}_{aug}"
                print(f"{name}_images_per_s: {result['images_per_s']:.1f}", flush=True)
                print(f"{name}_peak_gpu_mem_mb: {result['peak_gpu_mem_mb']:.0f}", flush=True)


if __name__ == "__main__":
    main()
