"""Tiny, deterministic video diffusion pipelines built from configs, for offline use and the tests.

No model hub is reachable in tests or CI, so every supported model family is built here from a config with
random weights, with fixed seeds, and saved with ``save_pretrained``. Callers then load it through the real
path, ``PipelineClass.from_pretrained(folder)``, exactly as they would a downloaded checkpoint.

tokenizers.py builds the tokenizers from a word list, components.py each family's component configs (ltx2.py and
hunyuan_video15.py those of LTX-2 and HunyuanVideo 1.5, with their sound and multimodal encoders), and registry.py
names the pipelines, builds and caches them.
"""

from .registry import TINY_PIPELINES, TINY_SIZES, TinyPipeline, build, cached, stock_call_kwargs, stock_image

__all__ = ["TINY_PIPELINES", "TINY_SIZES", "TinyPipeline", "build", "cached", "stock_call_kwargs", "stock_image"]
