"""SimCLR pre-training and evaluation with PyTorch Lightning and Hydra.

The Python API (:mod:`simclr.api`): ``simclr.pretrain(...)``, ``simclr.finetune(...)``, loaded
on first use, so that ``import simclr.<module>`` stays as light as that module.
"""

__version__ = "0.1.0"

_API = ("pretrain", "finetune", "RunResult")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from simclr import api

        return getattr(api, name)
    raise AttributeError(f"module 'simclr' has no attribute {name!r}")
