"""The Gradio app around one loaded backend: the page (page.py), the controls made from the settings table
(controls.py), the request handlers (handlers.py), the GPU runner (gpu.py), the result files (files.py) and what
the page says (texts.py).

gpu.py comes first: on a ZeroGPU Space, `spaces` must be imported before torch.
"""

from . import gpu  # noqa: F401  (first, see above)
from .page import build_demo, serve

__all__ = ["build_demo", "serve"]
