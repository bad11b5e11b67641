"""STG Studio: classifier-free guidance beside CFG + Spatiotemporal Skip Guidance on one shared video model."""

__version__ = "0.1.0"

from .backend import Backend, Cancelled, Video  # noqa: E402
from .guidance import MODES, Guidance  # noqa: E402

__all__ = ["Backend", "Cancelled", "Guidance", "MODES", "Video", "__version__"]
