"""GPU check: the CUDA paths against the CPU, then speed and memory, into one JSON file.

    make gpu-wheels        # beforehand, where there is a network: the wheels the node lacks
    make gpu-check         # on the GPU node, no network needed; under 8 minutes
    python bench/gpu_check.py [--out gpu_check.json] [--dry] [--only A,B] [--perturb A,B]

Each check prints ``PASS name: measure value <= tolerance`` or ``FAIL ...``; the exit status
is 1 when one fails. Images are compared in grey levels (0-255), training runs by their loss
trajectories (the largest |difference| over the steps, in nats):

- ``augmentation``: the batched augmentation on the device against the CPU, from the same
  images and random parameters;
- ``decode_jpeg``: torchvision's ``decode_jpeg`` on the device (nvJPEG) against the CPU's
  (libjpeg-turbo), on JPEG files written here;
- ``device_decode``: ``data.pipeline=device_decode``'s views decoded on the device against
  the same boxes decoded on the CPU; ``crop_first``: ``data.pipeline=crop_first``'s worker
  views (DCT-scaled decoding) against device_decode's views of the same boxes;
- ``fp32``: 20 steps of a small SimCLR model (Lightning's Trainer, fixed views) on the device
  against the CPU; ``bf16``, ``channels_last``, ``compile``, ``ddp_sync_batchnorm``: each
  variant against fp32 on the device;
- ``speed``: bench/gpu.py as it is (ResNet-50 at 224 px, ResNet-18 at 32 px: images/s and
  peak memory), its figures kept.

Without CUDA, or with ``--dry``, the same code runs at tiny sizes with the CPU as the device
(the default test suite runs it: tests/test_gpu_check.py). ``--perturb`` makes the named
checks' candidates wrong on purpose (images shifted by one pixel, training at twice the
learning rate), to show that those checks fail.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from device_comparisons import (
    TRAINING,
    Run,
    check_augmentation,
    check_decode_jpeg,
    check_pipelines,
    check_training,
    verdict,
)

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 470  # everything, speed included, within 8 minutes
NEEDED = {"hydra": "hydra-core", "omegaconf": "omegaconf", "simplejpeg": "simplejpeg"}


@dataclass(frozen=True)
class Sizes:
    """How much work the checks do: on a GPU, or in the dry pass (tiny, CPU against CPU)."""

    aug_images: int  # the augmentation's batch of square images of aug_side px
    aug_side: int
    jpegs: int  # JPEG files with sides in jpeg_sides px, views of view_size px
    jpeg_sides: tuple[int, int]
    view_size: int
    backbone: tuple[str, ...]  # Hydra overrides choosing the small model
    train_side: int  # its views' side, images a step, steps
    batch: int
    steps: int
    compile_backend: str
    speed_args: tuple[str, ...]  # bench/gpu.py's arguments, and the networks it measures
    speed_networks: tuple[str, ...]


GPU = Sizes(
    aug_images=128,
    aug_side=96,
    jpegs=12,
    jpeg_sides=(300, 640),
    view_size=224,
    backbone=("backbone=resnet18_slim", "backbone.width=0.5"),
    train_side=32,
    batch=64,
    steps=20,
    compile_backend="inductor",
    speed_args=("--steps", "10", "--warmup", "3"),
    speed_networks=("resnet50_224px", "resnet18_32px"),
)
DRY = Sizes(
    aug_images=8,
    aug_side=24,
    jpegs=4,
    jpeg_sides=(40, 96),
    view_size=32,
    backbone=("backbone=resnet18_slim", "backbone.width=0.125"),
    train_side=16,
    batch=8,
    steps=8,
    compile_backend="aot_eager",  # dynamo and AOT autograd, without inductor's C++ build
    speed_args=("--device", "cpu", "--small", "--steps", "2", "--warmup", "0", "--workers", "0"),
    speed_networks=("resnet18_slim_32px",),
)


def check_speed(run: Run, deadline: float) -> list[dict]:
    """bench/gpu.py as it is, given what is left of the budget; its ``name: value`` lines are
    kept. Passes when it did not crash and gave images/s for every network (a run cut short
    by the budget keeps the figures it printed)."""
    # $PYTHON, as for bench/reproduce.sh: the interpreter that runs bench/gpu.py.
    python = os.environ.get("PYTHON") or sys.executable
    command = [python, str(ROOT / "bench" / "gpu.py"), *run.sizes.speed_args]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=max(60.0, deadline - time.monotonic()),
            check=False,
        )
        output, crashed = done.stdout, done.returncode != 0
        errors = done.stderr[-2000:] if crashed else ""
    except subprocess.TimeoutExpired as expired:
        output, crashed, errors = expired.stdout or b"", False, "cut short by the budget"
        output = output.decode() if isinstance(output, bytes) else output
    figures = {}
    for text in output.splitlines():
        name, _, value = text.partition(": ")
        with contextlib.suppress(ValueError):
            figures[name] = float(value)
    found = {name.split("px_")[0] + "px" for name in figures if name.endswith("_images_per_s")}
    missing = set(run.sizes.speed_networks) - found
    measured = {"crashed": float(crashed), "networks_missing": float(len(missing))}
    limits = {"crashed": 0.0, "networks_missing": 0.0}
    return [verdict("speed", measured, limits, figures=figures, command=command, stderr=errors)]


def check_groups(run: Run, deadline: float) -> dict:
    """Check names -> the function making their records (device_decode and crop_first
    compare the same views), in the order they run."""
    groups = {
        ("augmentation",): lambda: check_augmentation(run),
        ("decode_jpeg",): lambda: check_decode_jpeg(run),
        ("device_decode", "crop_first"): lambda: check_pipelines(run),
    }
    groups.update({(name,): functools.partial(check_training, run, name) for name in TRAINING})
    groups[("speed",)] = lambda: check_speed(run, deadline)
    return groups


CHECKS = [name for names in check_groups(None, 0.0) for name in names]


def run_checks(run: Run, selected: list[str], deadline: float) -> list[dict]:
    results = []
    for names, make in check_groups(run, deadline).items():
        if not set(names) & set(selected):
            continue
        began = time.monotonic()
        try:
            records = [record for record in make() if record["name"] in selected]
            seconds = round(time.monotonic() - began, 1)  # the group's, on its first record
            results += [records[0] | {"seconds": seconds}, *records[1:]]
        except Exception as error:  # a crash is that check's FAIL; the others still run
            traceback.print_exc()
            for name in set(names) & set(selected):
                line = f"FAIL {name}: {type(error).__name__}: {error}"
                print(line, flush=True)
                results.append({"name": name, "passed": False, "line": line})
    return results


def environment(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--dry", action="store_true", help="tiny sizes, the CPU as the device")
    parser.add_argument("--only", default=",".join(CHECKS), help="the checks to run")
    parser.add_argument("--perturb", default="", help="checks to make wrong on purpose")
    args = parser.parse_args()
    start = time.monotonic()
    selected, faults = args.only.split(","), set(args.perturb.split(",")) - {""}
    unknown = (set(selected) | faults) - set(CHECKS)
    if unknown:
        parser.error(f"unknown checks {sorted(unknown)}; the checks: {','.join(CHECKS)}")
    missing = [wheel for module, wheel in NEEDED.items() if not importlib.util.find_spec(module)]
    if missing:
        advice = "run `make gpu-wheels` where there is a network, then `make gpu-check` here"
        print(f"missing {', '.join(missing)}: {advice}", file=sys.stderr)
        return 2
    dry = args.dry or not torch.cuda.is_available()
    if dry:  # a CPU shared with other tests: one thread each, not a fight for the cores
        os.environ["OMP_NUM_THREADS"] = "1"  # read by Lightning's DDP and bench/gpu.py too
        torch.set_num_threads(1)
    device = torch.device("cpu" if dry else "cuda")
    print(f"# {'dry pass (CPU against CPU)' if dry else 'GPU check'}: {environment(device)}")
    with tempfile.TemporaryDirectory(prefix="simclr-gpu-check-") as folder:
        run = Run(device, DRY if dry else GPU, faults, Path(folder))
        results = run_checks(run, selected, start + BUDGET_S)
    report = {"dry": dry, "passed": all(r["passed"] for r in results)}
    report |= {"seconds": round(time.monotonic() - start, 1), "perturbed": sorted(faults)}
    report |= {"environment": environment(device), "sizes": asdict(run.sizes), "checks": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    passed = sum(r["passed"] for r in results)
    verdict_line = "PASS" if report["passed"] else "FAIL"
    print(f"{verdict_line}: {passed} of {len(results)} checks in {report['seconds']} s; {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
