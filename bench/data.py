"""Data benchmark: pre-training views per second per CPU core from a folder of JPEG photographs.

    python bench/data.py [--images 256] [--rounds 5]      # make bench-data
    python bench/data.py --cuda                            # bench/gpu.sh, on a CUDA machine

It writes (once, cached under the system's temp folder) a folder of JPEG files of ImageNet-like
sizes (sides 300 to 640 px, quality 90): random crops and rescales of the real photographs that
scikit-learn (``load_sample_images``) and scikit-image (``skimage.data``) ship. Then, pinned to
one CPU core with one thread, it times each pipeline on the same files, its rounds interleaved
so that other load on the machine hits every pipeline alike, and prints ``name: value`` lines
(the median round; S = 224 and 96):

- ``folder_views_per_s_per_core_{S}px_per_image``: today's ``data.pipeline=per_image`` (what
  data=imagefolder did before crop_first): PIL decodes the whole file, then the full per-image
  augmentation of ``configs/data/augment/large.yaml`` (crop, flip, colour, grayscale, blur,
  normalise; PIL's uint8 operations after the crop, ``pixel_dtype: uint8``), as a worker runs it.
- ``..._lightly``: the peer, lightly's per-image ``SimCLRTransform`` on the PIL-decoded file.
- ``..._crop_first``: ``data.pipeline=crop_first``'s worker: crop boxes drawn first, one
  DCT-scaled decode, uint8 crops of the view size, flipped. Its colour, grayscale, blur and
  normalisation run later in batches (on the accelerator), so they are not in this figure:
- ``batch_stage_cpu_views_per_s_per_core_{S}px``: that batched stage timed on this CPU core
  (batches of 64), and ``..._crop_first_cpu_only``: worker and batched stage together, both
  on the CPU (what a CPU-only run pays per view).
- ``..._device_decode_workers``: ``data.pipeline=device_decode``'s worker only (read the bytes,
  the header, draw the boxes); the decoding happens on the GPU.
- ``..._vs_per_image``: each figure over today's, from the same run; ``..._vs_lightly``: ours
  over lightly's (the per-image, crop-first and CPU-only crop-first pipelines).
- ``decode_ms_*``: one image's decode, per decoder (the choice behind crop_first): PIL whole,
  PIL with ``draft`` at the scale the two views' boxes allow, simplejpeg whole and at that
  scale, torchvision's ``decode_jpeg`` (whole; it has no DCT scaling).

``--cuda`` (on a CUDA machine, instead of the above): ``device_decode_views_per_s_{S}px_gpu``,
the device side of ``device_decode`` (nvJPEG decoding of a batch, crops, colour stage), and
``folder_resnet50_224px_images_per_s_<pipeline>``: pre-training steps through the real Trainer
on the folder (``data=imagefolder``, bf16, channels-last, the machine's workers), per pipeline.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from simclr.data.augment.batch_augment import BatchAugmentation  # noqa: E402
from simclr.data.augment.crop_first import (  # noqa: E402
    CropFirstViews,
    EncodedViews,
    dct_scale,
    decode_views,
    draw_boxes,
)
from simclr.data.augment.transforms import MultiViewTransform, simclr_augmentation  # noqa: E402
from simclr.data.image_files import ImageFiles  # noqa: E402
from simclr.data.resumable import SeededViews  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
AUGMENT_PRESET = "large"  # configs/data/augment/: the photographs' preset
VIEWS = 2
FOLDER_VERSION = "v1"  # bump when the way the folder is written changes


def augment_preset(name: str = AUGMENT_PRESET) -> dict:
    """``data.augment`` as the preset ``configs/data/augment/<name>.yaml`` sets it (its
    defaults list followed)."""
    from omegaconf import OmegaConf

    preset = OmegaConf.load(ROOT / "configs" / "data" / "augment" / f"{name}.yaml")
    merged = OmegaConf.create()
    for base in preset.pop("defaults", []):
        merged.merge_with(augment_preset(base) if base != "_self_" else preset)
    return OmegaConf.to_container(OmegaConf.merge(merged, preset))


def photographs() -> list[np.ndarray]:
    """The colour photographs the installed packages ship (uint8 HWC): scikit-learn's two,
    and scikit-image's where it is installed (the bench extra; bench/gpu.sh runs without)."""
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)  # china, flower
    try:
        import skimage.data
    except ImportError:
        print("# scikit-image not installed: scikit-learn's photographs only", file=sys.stderr)
        return photos

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
             "hubble_deep_field", "retina"]  # fmt: skip
    for name in names:
        try:
            photos.append(getattr(skimage.data, name)())
        except Exception as error:  # a data file that this scikit-image version lacks
            print(f"# skipped skimage.data.{name}: {error}", file=sys.stderr)
    return [p for p in photos if p.ndim == 3 and p.shape[2] == 3]


def write_folder(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` JPEGs (quality 90) of ImageNet-like sizes from random crops of the photos:
    aspect ratio in [3/4, 4/3], long side uniform in [400, 640] px (so both sides 300-640)."""
    done, photos_dir = folder / f"done-{count}", folder / "photos"  # one class folder
    if not done.exists():
        photos_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        photos = photographs()
        for i in range(count):
            photo = photos[i % len(photos)]
            height, width = photo.shape[:2]
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))  # width / height
            crop_h = int(min(height, width / aspect) * rng.uniform(0.6, 1.0))
            crop_w = min(width, int(crop_h * aspect))
            top = rng.integers(0, height - crop_h + 1)
            left = rng.integers(0, width - crop_w + 1)
            image = Image.fromarray(photo[top : top + crop_h, left : left + crop_w])
            long_side = rng.uniform(400, 640)
            factor = long_side / max(crop_w, crop_h)
            size = (max(300, round(crop_w * factor)), max(300, round(crop_h * factor)))
            image = image.resize(size, Image.Resampling.BICUBIC)
            image.save(photos_dir / f"{i:05d}.JPEG", quality=90)
        done.write_text("ok")
    return sorted(str(p) for p in photos_dir.glob("*.JPEG"))[:count]


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def pipelines(paths: list[str], size: int) -> dict:
    """name -> read(i), each producing the VIEWS views of image i as its pipeline's worker."""
    labels = [0] * len(paths)
    per_image = MultiViewTransform(simclr_augmentation(size, MEAN, STD, **augment_preset()), VIEWS)
    today = SeededViews(ImageFiles(paths, labels), per_image, seed=0)
    from lightly.transforms import SimCLRTransform

    lightly = SimCLRTransform(input_size=size)
    files = ImageFiles(paths, labels)
    crop_first = SeededViews(files.with_decoder(CropFirstViews(size, VIEWS)), None, seed=0)
    encoded = SeededViews(files.with_decoder(EncodedViews(size, VIEWS)), None, seed=0)
    return {
        "per_image": lambda i: today[i],
        "lightly": lambda i: lightly(files[i][0]),
        "crop_first": lambda i: crop_first[i],
        "device_decode_workers": lambda i: encoded[i],
    }


def batch_stage(size: int, batch: int = 64, batches: int = 4):
    """crop_first's batched stage (colour, grayscale, blur, normalise) on ``batches`` batches
    of uint8 views: a pass to time, and its number of views."""
    augment = BatchAugmentation(size, MEAN, STD, **augment_preset())
    views = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)

    def run():
        for _ in range(batches):
            augment(views, cropped=True)

    return run, batch * batches


def decoders(paths: list[str], size: int) -> tuple[dict, float]:
    """name -> a pass decoding every file with that decoder; the scaled ones at the DCT scale
    that the two views' boxes of a crop_first draw allow (whose mean is returned too)."""
    import simplejpeg
    from torchvision.io import decode_jpeg

    data = [Path(p).read_bytes() for p in paths]
    torch.manual_seed(0)
    scales = []
    for item in data:
        with Image.open(io.BytesIO(item)) as image:
            boxes, _ = draw_boxes(image, VIEWS, (0.08, 1.0), (3 / 4, 4 / 3), 0.5)
            scales.append((dct_scale(boxes, size), image.size))

    def pil(scaled: bool):
        for item, (scale, (width, height)) in zip(data, scales, strict=True):
            with Image.open(io.BytesIO(item)) as image:
                if scaled and scale > 1:
                    image.draft("RGB", (width // scale, height // scale))
                image.convert("RGB")

    def sj(scaled: bool):
        for item, (scale, (width, height)) in zip(data, scales, strict=True):
            scale = scale if scaled else 1
            simplejpeg.decode_jpeg(item, min_width=width // scale, min_height=height // scale)

    def tv():
        for item in data:
            decode_jpeg(torch.frombuffer(bytearray(item), dtype=torch.uint8))

    passes = {
        "pil_whole": lambda: pil(False),
        f"pil_draft_{size}px": lambda: pil(True),
        "simplejpeg_whole": lambda: sj(False),
        f"simplejpeg_scaled_{size}px": lambda: sj(True),
        "torchvision_whole": tv,
    }
    return passes, statistics.mean(s for s, _ in scales)


def gpu_figures(paths: list[str], size: int, batch: int = 128, repeats: int = 5) -> dict:
    """device_decode's device side on CUDA: nvJPEG decode of a batch, crops, and the batched
    colour stage; views per second of the GPU."""
    from torch.utils.data import default_collate

    device = torch.device("cuda")
    files = ImageFiles(paths, [0] * len(paths)).with_decoder(EncodedViews(size, VIEWS))
    items = default_collate([files[i % len(paths)][0] for i in range(batch)])
    augment = BatchAugmentation(size, MEAN, STD, **augment_preset()).to(device)

    def step():
        views = decode_views(items, size, device)
        return [augment(view, cropped=True) for view in views]

    step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {f"device_decode_views_per_s_{size}px_gpu": VIEWS * batch / statistics.median(times)}


def training_figures(folder: Path, steps: int = 20, warmup: int = 5) -> dict:
    """Pre-training images/s of ResNet-50 at 224 px on the folder, per pipeline, through the
    real Trainer on the GPU (bench/gpu.py's measure)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu import measure

    results = {}
    for pipeline in ("device_decode", "crop_first", "per_image"):
        overrides = [
            "data=imagefolder",
            f"data.root={folder}",
            f"data.pipeline={pipeline}",
            "data.image_size=224",
            "data.batch_size=128",
            "backbone=resnet50",
            "trainer.accelerator=gpu",
            "trainer.precision=bf16-mixed",
            "model.channels_last=true",
            f"trainer.max_steps={steps + warmup + 2}",
            "trainer.max_epochs=-1",
            "trainer.limit_val_batches=0",
        ]
        figures = measure(overrides, steps + warmup + 2, warmup)
        results[f"folder_resnet50_224px_images_per_s_{pipeline}"] = figures["images_per_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="JPEG files in the folder")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes per pipeline")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 96])
    parser.add_argument("--cuda", action="store_true", help="the CUDA figures instead")
    parser.add_argument("--folder", type=Path, default=None, help="where to cache the JPEGs")
    args = parser.parse_args()

    folder = args.folder or Path(tempfile.gettempdir()) / f"simclr-bench-data-{FOLDER_VERSION}"
    paths = write_folder(folder, args.images)
    sizes = [Image.open(p).size for p in paths]
    print(f"folder: {folder} ({len(paths)} JPEGs, mean {np.mean(sizes, axis=0).round()} px)")
    if args.cuda:
        for size in args.sizes:
            for name, value in gpu_figures(paths, size).items():
                print(f"{name}: {value:.1f}", flush=True)
        for name, value in training_figures(folder).items():
            print(f"{name}: {value:.1f}", flush=True)
        return
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    print(f"cpu_load_average_1min: {os.getloadavg()[0]:.2f}")
    print(f"cpu_cores_on_machine: {os.cpu_count()}")

    for size in args.sizes:
        # name -> (a timed pass, views it makes); rounds interleaved, the median kept.
        count = len(paths)
        work = {
            name: ((lambda read=read, n=count: [read(i) for i in range(n)]), VIEWS * count)
            for name, read in pipelines(paths, size).items()
        }
        work["batch_stage_cpu"] = batch_stage(size)
        decode_passes, mean_scale = decoders(paths, size)
        work.update({f"decode_{name}": (run, count) for name, run in decode_passes.items()})
        for run, _ in work.values():  # warm-up: imports, caches
            run()
        rounds: dict[str, list[float]] = {name: [] for name in work}
        for _ in range(args.rounds):
            for name, (run, _) in work.items():
                rounds[name].append(seconds(run))
        rates = {name: work[name][1] / statistics.median(t) for name, t in rounds.items()}
        rates["crop_first_cpu_only"] = 1 / (1 / rates["crop_first"] + 1 / rates["batch_stage_cpu"])
        today = rates["per_image"]
        for name in sorted(rates, key=lambda n: n.startswith("decode_")):  # decoders last
            rate = rates[name]
            if name.startswith("decode_"):
                print(f"{name.replace('decode_', 'decode_ms_', 1)}: {1000 / rate:.3f}")
            elif name == "batch_stage_cpu":
                print(f"batch_stage_cpu_views_per_s_per_core_{size}px: {rate:.1f}")
            else:
                print(f"folder_views_per_s_per_core_{size}px_{name}: {rate:.1f}")
                if name != "per_image":
                    ratio = rate / today
                    print(f"folder_views_per_s_per_core_{size}px_{name}_vs_per_image: {ratio:.2f}")
                if name in ("per_image", "crop_first", "crop_first_cpu_only"):
                    ratio = rate / rates["lightly"]
                    print(f"folder_views_per_s_per_core_{size}px_{name}_vs_lightly: {ratio:.2f}")
        print(f"dct_scale_mean_{size}px: {mean_scale:.2f}")


if __name__ == "__main__":
    main()
