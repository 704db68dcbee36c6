"""Training with less memory: gradient caching (exact large batches in micro-batches) and
activation checkpointing (recomputing residual blocks in the backward pass)."""

from simclr.memory.activation_checkpointing import checkpoint_stages, should_checkpoint
from simclr.memory.gradcache import gradient_cached_step, micro_batches

__all__ = ["checkpoint_stages", "gradient_cached_step", "micro_batches", "should_checkpoint"]
