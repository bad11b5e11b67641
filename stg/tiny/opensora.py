"""Component factories of the tiny Open-Sora 1.2: STDiT3 pairs of spatial and temporal blocks, the video VAE (an
SDXL-shaped image VAE, 8x space, then the causal temporal VAE, 4x time) and the tiny T5.

The released model pads the prompt to 300 T5 tokens and keeps a learned null text of that length; so does this one.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from .components import _T5_DIM, _heads, _t5_text

_IMAGE_VAE = dict(
    latent_channels=4, layers_per_block=1, norm_num_groups=4, block_out_channels=(8,) * 4,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
_TEMPORAL_VAE = dict(base_channels=4, layers_per_block=1, norm_num_groups=2)


def _model(cls: str, **config):
    import stg.opensora

    return getattr(stg.opensora, cls)(**config)


def opensora(knobs: dict) -> dict[str, Callable[[], Any]]:
    return {
        **_t5_text(),
        "transformer": partial(
            _model, "OpenSoraTransformer3DModel", **_heads(knobs), caption_channels=_T5_DIM, max_text_length=300,
        ),
        "vae": partial(_model, "OpenSoraVAE", spatial_config=_IMAGE_VAE, **_TEMPORAL_VAE),
        "scheduler": partial(_model, "OpenSoraRFlowScheduler"),
    }
