"""Peak memory of one SimCLR training step: gradient caching and activation checkpointing
against plain batches, on the CPU.

    PYTHONPATH=src python bench/memory.py                       # all four cases
    PYTHONPATH=src python bench/memory.py --cases plain_128 cached_1024_by_128

Each case runs in a fresh Python process (so one case's allocations cannot hide another's) and
reports its peak resident set size (``ru_maxrss``), and the part of it the step added: peak
minus the resident size just before the step (model, optimiser and input views already built).
Encoder: ResNet-18 with the small-image stem, 32 px views, 2 views per image, the default
2-layer projection head with BatchNorm, SGD; one forward/backward/optimiser step each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = {
    # name: (images in the batch, images per forward pass or None for one pass,
    #        activation checkpointing)
    "plain_128": (128, None, False),
    "cached_1024_by_128": (1024, 128, False),
    "checkpointed_1024": (1024, None, True),
    "plain_1024": (1024, None, False),
}


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_resident_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_case(name: str, image_size: int, threads: int) -> dict:
    import torch

    from simclr.memory.gradcache import gradient_cached_step
    from simclr.models import SimCLRModule

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batch, micro, checkpointing = CASES[name]
    module = SimCLRModule(
        backbone={"name": "resnet18"},
        head={},
        optimizer={"name": "sgd", "lr": 0.1},
        scheduler={"warmup_epochs": 0},
        image_size=image_size,
        batch_size=batch,
        activation_checkpointing=checkpointing,
    ).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    views = [torch.randn(batch, 3, image_size, image_size) for _ in range(2)]
    before = resident_mib()
    start = time.perf_counter()

    def encode(images):
        h = module.encoder(images)
        return h, module.projection(h)

    if micro is None:
        _, z = encode(torch.cat(views))
        loss = module.criterion(z.view(2, batch, -1)).loss
        loss.backward()
    else:
        loss = gradient_cached_step(module, encode, views, module.criterion, micro).loss
    optimizer.step()
    return {
        "case": name,
        "loss": float(loss),
        "rss_before_step_mib": round(before, 1),
        "peak_rss_mib": round(peak_resident_mib(), 1),
        "step_added_mib": round(peak_resident_mib() - before, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-case", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_case:
        print(json.dumps(run_case(args.run_case, args.image_size, args.threads)))
        return
    results = {}
    for name in args.cases:
        command = [sys.executable, __file__, "--run-case", name]
        command += ["--image-size", str(args.image_size), "--threads", str(args.threads)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
        print(json.dumps(results[name]), flush=True)
    if "plain_128" in results:
        base = results["plain_128"]
        for name, result in results.items():
            print(
                f"{name:>20}: peak {result['peak_rss_mib']:8.1f} MiB "
                f"({result['peak_rss_mib'] / base['peak_rss_mib']:.2f}x plain_128), "
                f"step added {result['step_added_mib']:8.1f} MiB "
                f"({result['step_added_mib'] / base['step_added_mib']:.2f}x plain_128)"
            )


if __name__ == "__main__":
    main()
