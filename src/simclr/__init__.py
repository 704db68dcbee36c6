"""SimCLR pre-training and evaluation with PyTorch Lightning and Hydra.

The Python API (:mod:`simclr.api`): ``simclr.pretrain(...)``, ``simclr.finetune(...)``,
``simclr.embed(...)``, loaded on first use, so that ``import simclr.<module>`` stays as light as
that module. (``simclr.embed`` is also the module of ``python -m simclr.embed``; once imported,
that module is what ``simclr.embed`` names, and calling it calls the function.)
"""

__version__ = "0.1.0"

_API = ("pretrain", "finetune", "embed", "RunResult")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from simclr import api

        return getattr(api, name)
    raise AttributeError(f"module 'simclr' has no attribute {name!r}")
