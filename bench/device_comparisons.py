"""The CUDA paths against the CPU, for bench/gpu_check.py: the same images through the
augmentation, the JPEG decoders and the two file pipelines, and the same training run in each
precision, layout and strategy. Each check returns its records (:func:`verdict`), a
measure and its tolerance, the tolerance's reason in the check's docstring.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
TRAIN_BATCHES = 4  # distinct batches, cycled: the model learns them, trajectories separate


@dataclass
class Run:
    """One check run: the device against the CPU, at ``sizes`` (bench/gpu_check.py's)."""

    device: torch.device
    sizes: object
    faults: set[str]  # checks whose candidate is made wrong on purpose
    folder: Path
    losses: dict = field(default_factory=dict)  # (variant, lr scale) -> loss trajectory


def verdict(name: str, measured: dict, limits: dict, **details) -> dict:
    """A check's record, its line printed: passed when every measure is within its limit."""
    passed = all(math.isfinite(measured[k]) and measured[k] <= limits[k] for k in limits)
    text = ", ".join(f"{k} {measured[k]:.4g} <= {limits[k]:g}" for k in limits)
    line = f"{'PASS' if passed else 'FAIL'} {name}: {text}"
    print(line, flush=True)
    result = {"name": name, "passed": passed, "line": line, "measured": measured}
    return {**result, "tolerance": limits, **details}


def image_gap(reference, candidate, fault: bool) -> dict:
    """The worst image's mean and the overall max of |candidate - reference|, both given in
    grey levels (lists or batches of images); ``fault`` shifts the candidate by a pixel."""
    nothing = {"mean_grey_levels": math.inf, "max_grey_levels": math.inf}
    gaps = []
    for ref, cand in zip(reference, candidate, strict=True):
        ref, cand = ref.detach().float().cpu(), cand.detach().float().cpu()
        if ref.shape != cand.shape:
            return nothing
        gaps.append(((cand.roll(1, dims=-1) if fault else cand) - ref).abs())
    if not gaps:
        return nothing
    worst_mean, worst = (
        max(gap.mean().item() for gap in gaps),
        max(gap.max().item() for gap in gaps),
    )
    return {"mean_grey_levels": worst_mean, "max_grey_levels": worst}


def synthetic_images(count: int, height: int, width: int, seed: int) -> Tensor:
    """Photograph-like uint8 images ``(B, 3, H, W)``: smooth colour fields, three flat
    rectangles (sharp edges) and fine grain, so that decoders and resizers have work."""
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.rand(count, 3, 4, 4, generator=generator)
    x = F.interpolate(smooth, size=(height, width), mode="bicubic", align_corners=False)
    rows, cols = torch.arange(height), torch.arange(width)
    for _ in range(3):
        top = (torch.rand(count, 1, generator=generator) * height).long()
        left = (torch.rand(count, 1, generator=generator) * width).long()
        in_rows = (rows >= top) & (rows < top + height // 3)
        in_cols = (cols >= left) & (cols < left + width // 3)
        inside = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
        x = torch.where(inside, torch.rand(count, 3, 1, 1, generator=generator), x)
    x = x + 0.04 * torch.randn(count, 3, height, width, generator=generator)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def write_jpegs(run: Run) -> list[str]:
    """JPEG files (quality 90) of odd sizes, cycling through the chroma subsamplings 4:2:0,
    4:4:4 and 4:2:2 and a grayscale file, as photograph collections mix them."""
    low, high = run.sizes.jpeg_sides
    generator = torch.Generator().manual_seed(1)
    paths = []
    for i in range(run.sizes.jpegs):
        height, width = (torch.randint(low, high + 1, (2,), generator=generator) | 1).tolist()
        pixels = synthetic_images(1, height, width, seed=100 + i)[0].permute(1, 2, 0).numpy()
        kind = ("420", "444", "422", "gray")[i % 4]
        image, path = Image.fromarray(pixels), run.folder / f"{i:03d}_{kind}.jpg"
        if kind == "gray":
            image.convert("L").save(path, quality=90)
        else:
            image.save(path, quality=90, subsampling=(2, 0, 1)[i % 4])
        paths.append(str(path))
    return paths


@functools.cache
def recipe(*overrides: str):
    """configs/pretrain.yaml composed as train.py composes it."""
    from hydra import compose, initialize_config_dir

    paths = ["paths.root_dir=/tmp/simclr-gpu-check", "paths.output_dir=/tmp/simclr-gpu-check"]
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("pretrain", overrides=[*paths, *overrides])


def plain(node) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


def views_from_cpu_draws(augment, images: Tensor, device: torch.device, seed: int) -> Tensor:
    """Views of ``images`` made on ``device`` from random parameters drawn on the CPU, so that
    the CPU and the device apply the same ones: the one place that reaches inside
    BatchAugmentation (``sample``, ``apply``), as ``forward`` draws on the images' device."""
    height, width = images.shape[-2:]
    params = augment.sample(len(images), height, width, "cpu", torch.Generator().manual_seed(seed))
    params = {
        operation: {name: value.to(device) for name, value in drawn.items()}
        for operation, drawn in params.items()
    }
    return augment.to(device).apply(images.to(device), params).cpu()


def check_augmentation(run: Run) -> list[dict]:
    """Every operation on (the large preset, plus rotation). Tolerance: 1 grey level at most,
    0.1 on the worst image's mean. The same parameters and inputs leave only rounding: fp32
    arithmetic, and on CUDA the blur's convolutions in TF32 (10-bit mantissa: at most about
    0.25 grey levels over its two passes). A parameter drawn or applied wrongly moves pixels
    by tens of grey levels."""
    from simclr.data.augment.batch_augment import BatchAugmentation

    # The float path on both sides: on a CPU, pixel_dtype=uint8 finishes the views with PIL.
    rotation = (
        "data.augment.rotation_prob=0.5",
        "data.augment.rotation_degrees=20",
        "data.augment.pixel_dtype=float32",
    )
    data = recipe("data/augment=large", *rotation).data
    side, std = run.sizes.aug_side, torch.tensor(data.std).view(1, 3, 1, 1)
    augment = BatchAugmentation(side, data.mean, data.std, **plain(data.augment))
    images = synthetic_images(run.sizes.aug_images, side, side, seed=2)
    cpu, device = (views_from_cpu_draws(augment, images, d, 3) for d in ("cpu", run.device))
    gap = image_gap(cpu * std * 255, device * std * 255, "augmentation" in run.faults)
    return [verdict("augmentation", gap, {"mean_grey_levels": 0.1, "max_grey_levels": 1.0})]


def check_decode_jpeg(run: Run) -> list[dict]:
    """Tolerance: each image's mean |difference| under 2 grey levels, torchvision's own
    criterion for nvJPEG against libjpeg-turbo (its test_decode_jpegs_cuda): their inverse
    DCTs and chroma upsampling differ by design, so equality is not expected. Each file is
    decoded alone, so that one the device refuses is named (device_decode decodes them
    together)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    cpu, device, failed = [], [], {}
    for path in write_jpegs(run):
        data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
        try:
            device.append(decode_jpeg([data], mode=ImageReadMode.RGB, device=run.device)[0])
        except RuntimeError as error:
            failed[Path(path).name] = f"{type(error).__name__}: {error}"
            continue
        cpu.append(decode_jpeg(data, mode=ImageReadMode.RGB))
    measured = image_gap(cpu, device, "decode_jpeg" in run.faults) | {"failed": len(failed)}
    limits = {"mean_grey_levels": 2.0, "failed": 0}
    return [verdict("decode_jpeg", measured, limits, failures=failed)]


def worker_items(paths: list[str], pipeline: str, size: int, seed: int) -> list:
    """Each file's worker-side item under ``data.pipeline`` (crop_first: two uint8 views;
    device_decode: bytes, boxes, flips), its draws seeded per file: both pipelines draw the
    same boxes for a file."""
    from simclr.data.augment.crop_first import read_crop_first
    from simclr.data.augment.transforms import AugmentSettings
    from simclr.data.image_files import ImageFiles

    files = ImageFiles(paths, [0] * len(paths))
    dataset = read_crop_first(files, pipeline, "gpu_check", size, 2, AugmentSettings())
    items = []
    for i in range(len(paths)):
        torch.manual_seed(seed + i)
        items.append(dataset[i][0])
    return items


def check_pipelines(run: Run) -> list[dict]:
    """device_decode: each view's mean within decode_jpeg's 2 grey levels (cropping and the
    antialiased resize average the decoders' differences, never add to them). crop_first
    against it: 3 grey levels, decode_jpeg's 2 and 1 for the uint8 resize's rounding and the
    DCT-scaled decoding (0.3 on the CPU at 224 px; a misplaced box or flip gives tens)."""
    from torch.utils.data import default_collate

    from simclr.data.augment.crop_first import decode_views

    paths, size = write_jpegs(run), run.sizes.view_size
    encoded = default_collate(worker_items(paths, "device_decode", size, seed=10))
    cpu = torch.cat(decode_views(encoded, size, torch.device("cpu"))) * 255
    device = torch.cat(decode_views(encoded, size, run.device)) * 255
    per_view = zip(*worker_items(paths, "crop_first", size, seed=10), strict=True)
    workers = torch.cat([torch.stack(views) for views in per_view])
    device_gap = image_gap(cpu, device, "device_decode" in run.faults)
    workers_gap = image_gap(device, workers, "crop_first" in run.faults)
    return [
        verdict("device_decode", device_gap, {"mean_grey_levels": 2.0}),
        verdict("crop_first", workers_gap, {"mean_grey_levels": 3.0}),
    ]


class LossTrajectory(L.Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def train_losses(
    run: Run, variant: str, accelerator: str, lr_scale: float = 1.0, **options
) -> list[float]:
    """The loss at each step of a small SimCLR model (the recipe's head, LARS and schedule,
    no warm-up, its learning rate times ``lr_scale``) on fixed views; ``options``: precision,
    channels_last, compile_backend, ddp. Cached by ``variant`` and ``lr_scale``."""
    if (variant, lr_scale) in run.losses:
        return run.losses[variant, lr_scale]
    from torch.utils.data import DataLoader, StackDataset

    from simclr.data.augment.batch_augment import BatchAugmentation
    from simclr.models import SimCLRModule

    sizes, cfg = run.sizes, recipe(*run.sizes.backbone)
    side, data = sizes.train_side, cfg.data
    augment = BatchAugmentation(side, data.mean, data.std, **plain(data.augment))
    images = synthetic_images(sizes.batch * TRAIN_BATCHES, side * 5 // 4, side * 5 // 4, seed=4)
    first, second = (augment(images, torch.Generator().manual_seed(s)) for s in (5, 6))
    views = StackDataset(StackDataset(first, second), torch.zeros(len(images)))  # (views, label)
    optimizer = plain(cfg.optimizer)
    optimizer["lr"] *= lr_scale
    backend = options.get("compile_backend")
    torch.manual_seed(0)
    model = SimCLRModule(
        backbone=plain(cfg.backbone),
        head=plain(cfg.model.head),
        optimizer=optimizer,
        scheduler={**plain(cfg.scheduler), "warmup_epochs": 0},
        image_size=side,
        batch_size=sizes.batch,
        temperature=cfg.model.temperature,
        channels_last=options.get("channels_last", False),
        compile_encoder=backend == "inductor",
        activation_checkpointing=False,
    )
    if backend not in (None, "inductor"):
        model.encoder.compile(backend=backend)
    trajectory, ddp = LossTrajectory(), options.get("ddp", False)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        strategy="ddp" if ddp else "auto",
        # torch's SyncBatchNorm refuses CPU tensors: the dry pass runs DDP without it.
        sync_batchnorm=ddp and accelerator == "gpu",
        use_distributed_sampler=False,  # the loader's order in every run
        precision=options.get("precision", "32-true"),
        max_steps=sizes.steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[trajectory],
    )
    trainer.fit(model, DataLoader(views, batch_size=sizes.batch, drop_last=True))
    if ddp and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    run.losses[variant, lr_scale] = trajectory.losses
    return trajectory.losses


# name -> (reference variant, the candidate's options, tolerance in nats). The loss starts at
# about log(2B - 1) = 4.85 (B = 64) and falls by 0.3 over the 20 steps. On a CPU at the GPU
# sizes (December 2026), channels_last moved it by 0.001 at most, bf16-mixed by 0.005, twice
# the learning rate by 0.13. The same maths in another order (layout, fusion, a process group
# of one, CUDA's TF32 convolutions with 2 more mantissa bits than bf16): 0.01; bf16: 0.04.
TRAINING = {
    "fp32": ("fp32_cpu", {}, 0.01),
    "bf16": ("fp32", {"precision": "bf16-mixed"}, 0.04),
    "channels_last": ("fp32", {"channels_last": True}, 0.01),
    "compile": ("fp32", {"compile_backend": None}, 0.01),  # the sizes' backend
    "ddp_sync_batchnorm": ("fp32", {"ddp": True}, 0.01),
}


def check_training(run: Run, name: str) -> list[dict]:
    reference_variant, options, tolerance = TRAINING[name]
    if "compile_backend" in options:
        options = {"compile_backend": run.sizes.compile_backend}
    accelerator = "gpu" if run.device.type == "cuda" else "cpu"
    reference_on = "cpu" if reference_variant == "fp32_cpu" else accelerator
    reference = train_losses(run, reference_variant, reference_on)
    # A fault on purpose: twice the learning rate, as a wrong lr scaling would give.
    lr_scale = 2.0 if name in run.faults else 1.0
    candidate = train_losses(run, name, accelerator, lr_scale, **options)
    complete = len(reference) == len(candidate) == run.sizes.steps
    gaps = [abs(a - b) for a, b in zip(reference, candidate, strict=False)]
    measured = {"max_loss_gap_nats": max(gaps) if complete else math.inf}
    details = {"options": options, "reference_losses": reference, "candidate_losses": candidate}
    return [verdict(name, measured, {"max_loss_gap_nats": tolerance}, **details)]
