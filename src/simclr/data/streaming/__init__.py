"""Streaming shards: an image folder or ImageNet written once into litdata chunks
(:mod:`simclr.data.prepare`), then streamed from a local folder or an object store by
``data=streaming``, each DDP rank reading only its part, resumable mid-epoch.

litdata is an optional dependency (the ``streaming`` extra); :func:`require_litdata` says so
when it is missing, and nothing here imports it before it is needed.
"""

from __future__ import annotations

from types import ModuleType

from simclr.errors import ConfigError


def require_litdata() -> ModuleType:
    """The ``litdata`` module, or a :class:`ConfigError` naming the extra that installs it."""
    try:
        import litdata
    except ImportError as error:
        raise ConfigError(
            "streaming shards need litdata, which is not installed: "
            "pip install 'simclr[streaming]' (or pip install litdata)"
        ) from error
    return litdata
