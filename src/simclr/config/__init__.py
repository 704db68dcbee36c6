"""Config checks run before any work starts, and the resolution of ``ckpt_path``."""

from simclr.config.checkpoints import resolve_ckpt_path
from simclr.config.checks import config_problems, configured_world_size, validate_config

__all__ = ["config_problems", "configured_world_size", "resolve_ckpt_path", "validate_config"]
