"""Streaming shards: an image folder or ImageNet written once into litdata chunks
(:mod:`simclr.data.prepare`), then streamed from a local folder or an object store by
``data=streaming``, each DDP rank reading only its part, resumable mid-epoch.

litdata is an optional dependency (the ``streaming`` extra); :func:`require_litdata` says so
when it is missing, and nothing here imports it before it is needed.
"""

from __future__ import annotations

from types import ModuleType

from simclr.extras import LITDATA


def require_litdata() -> ModuleType:
    """The ``litdata`` module, or a :class:`~simclr.errors.ConfigError` naming the extra that
    installs it."""
    LITDATA.require("streaming shards (data=streaming, python -m simclr.data.prepare)")
    import litdata

    return litdata
