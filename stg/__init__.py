"""STG Studio: classifier-free guidance beside CFG + Spatiotemporal Skip Guidance on one shared video model.

The public names are imported on first use, so `python -m stg --help` and the pure modules stay light.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {"Backend": "backend", "Cancelled": "backend", "Video": "backend", "Guidance": "guidance", "MODES": "guidance"}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'stg' has no attribute {name!r}")
