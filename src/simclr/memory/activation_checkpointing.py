"""Activation checkpointing: one pass over a batch that does not fit, with the same gradients.

A backward pass needs the activations its forward pass saved. SimCLR forwards all V x N views
of a batch at once, and at 32 px with the small-image stem (no early down-sampling) the wide
ResNet-50s keep large feature maps: ResNet-50 (2x) saves about 48 MiB per view, so
``digits_quick``'s 512 views need some 24 GiB before anything else.

Checkpointing keeps only each residual block's input during the forward pass and recomputes
the block's inside during the backward pass: memory falls to the block inputs plus one block's
activations, for about one extra forward pass of compute. Unlike gradient caching
(:mod:`simclr.memory.gradcache`), BatchNorm still normalises the whole batch at once, so the
loss and the gradients are those of the plain pass. The recomputation would update the BatchNorm
running statistics a second time; they are restored after it, so they too match the plain pass.

``model.activation_checkpointing``: ``true`` / ``false``, or ``auto`` (the default): on when
the activations one pass would save, measured on two small probe batches, exceed
:data:`AUTO_MEMORY_FRACTION` of the memory free on the device (RAM on a CPU, under any cgroup
limit; free GPU memory on CUDA). It stays off on other devices, where free memory is unknown.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from simclr.errors import ConfigError
from simclr.memory.gradcache import frozen_running_stats

# Share of the free memory one pass's saved activations may take before ``auto`` turns
# checkpointing on; the rest covers what the backward pass adds (activation gradients, the
# weights' gradients and optimiser state, the loaders). Measured on a 24 GiB CPU machine with
# 21.6 GiB free, 512 views of 32 px: ResNet-50 (1x) saves 12.2 GiB and its plain step peaks at
# 13.2 GiB of RSS (left off: fits); ResNet-50 (2x) saves 24.3 GiB, is killed for memory without
# checkpointing, and peaks at 10.5 GiB with it.
AUTO_MEMORY_FRACTION = 0.6

GIB = 2**30


class CheckpointedStage(nn.Sequential):
    """A stage of residual blocks whose insides are recomputed in the backward pass.

    It holds the same blocks under the same names as the ``nn.Sequential`` it replaces, so
    parameter names (and checkpoints, and exported weights) do not change. ``enabled`` switches
    the recomputation; when off, or without a graph to build, it is a plain ``nn.Sequential``.
    """

    enabled: bool = True

    def forward(self, x: Tensor) -> Tensor:
        if not (self.enabled and torch.is_grad_enabled()):
            return super().forward(x)
        compiling = torch.compiler.is_compiling()
        for block in self:
            # Recomputing must not count the batch twice in BatchNorm's running averages. Under
            # torch.compile the recomputation is part of the traced graph, whose buffer updates
            # happen once, and Dynamo takes no custom recompute context.
            options = {} if compiling else {"context_fn": _recompute_context(block)}
            x = checkpoint(block, x, use_reentrant=False, **options)
        return x


def _recompute_context(block: nn.Module):
    return lambda: (contextlib.nullcontext(), frozen_running_stats(block))


def checkpoint_stages(encoder: nn.Module, required: bool = True) -> list[CheckpointedStage]:
    """Replace every stage of ``encoder`` (each direct ``nn.Sequential`` child: ``layer1`` to
    ``layer4`` of the ResNets, a timm ViT's ``blocks``, a ConvNeXt's ``stages``) by a
    :class:`CheckpointedStage` holding the same blocks.

    Returns the new stages. An encoder without such stages is a :class:`ConfigError` where
    checkpointing is ``required`` (``true``); for ``auto`` it is left as it is.
    """
    stages = []
    for name, child in list(encoder.named_children()):
        if type(child) is nn.Sequential and len(child) > 0:
            stage = CheckpointedStage(OrderedDict(child.named_children()))
            setattr(encoder, name, stage)
            stages.append(stage)
    if not stages and required:
        raise ConfigError(
            f"model.activation_checkpointing: the encoder {type(encoder).__name__} has no "
            "stages (nn.Sequential children) to checkpoint; set model.activation_checkpointing="
            "false"
        )
    return stages


def saved_activation_bytes(forward: Callable[[], Tensor]) -> int:
    """Bytes of the tensors one call of ``forward`` saves for its backward pass (each storage
    counted once), measured while its graph is alive."""
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = forward()
    del output
    return sum(storages.values())


def activation_bytes_per_image(
    model: nn.Module, encode: Callable[[Tensor], object], images: Callable[[int], Tensor]
) -> float:
    """Activation memory one more image adds to a pass of ``encode`` (``model``'s forward).

    Measured as the difference between probe passes of 2 and 4 images (``images(n)`` makes
    them), so that what does not grow with the batch (weights saved by the convolutions, their
    low-precision copies under autocast) cancels. ``model`` runs in eval mode for the probe:
    BatchNorm saves as much per image either way, and neither its running statistics nor a
    synchronised BatchNorm's collectives are touched.
    """
    sizes = (2, 4)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            measured = [saved_activation_bytes(lambda n=n: encode(images(n))) for n in sizes]
    finally:
        model.train(was_training)
    return max(0.0, (measured[1] - measured[0]) / (sizes[1] - sizes[0]))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def free_cpu_memory() -> int | None:
    """Bytes of RAM this process can still take: the kernel's ``MemAvailable``, lowered to
    what a cgroup limit (a container, a SLURM job) leaves; None where neither is readable."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    cgroup = Path("/sys/fs/cgroup")
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),  # cgroup v2
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),  # cgroup v1
    ):
        limit, usage = _read_int(cgroup / limit_file), _read_int(cgroup / usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            candidates.append(max(0, limit - usage))
    return min(candidates) if candidates else None


def free_device_memory(device: torch.device, processes_sharing: int = 1) -> int | None:
    """Free bytes for one process on ``device``; CPU memory is split between the
    ``processes_sharing`` processes of a multi-process run on one machine. None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        free = free_cpu_memory()
        return None if free is None else free // max(1, processes_sharing)
    return None


def should_checkpoint(needed_bytes: float, free_bytes: int | None) -> bool:
    """``auto``'s rule: checkpoint when one pass's activations exceed
    :data:`AUTO_MEMORY_FRACTION` of the free memory (never when that is unknown)."""
    return free_bytes is not None and needed_bytes > AUTO_MEMORY_FRACTION * free_bytes


def decision_message(
    enabled: bool, views_per_pass: int, needed_bytes: float, free: int | None
) -> str:
    """The log line that says what ``auto`` chose, and why."""
    free_text = "unknown" if free is None else f"{free / GIB:.1f} GiB"
    return (
        f"activation checkpointing {'on' if enabled else 'off'} "
        f"(model.activation_checkpointing=auto): one pass over {views_per_pass} views saves about "
        f"{needed_bytes / GIB:.1f} GiB of activations; free memory {free_text}, threshold "
        f"{AUTO_MEMORY_FRACTION:.0%} of it"
    )
