"""Component factories of the tiny Stable Video Diffusion: SVD's UNet layout (three down blocks with two layers of
spatial and temporal attention, one mid, three up blocks with three: 16 layers of each kind, the first up-block
layer 7), its temporal-decoder VAE (8x space) and a CLIP vision encoder with projection.

GroupNorm (32 groups) needs channel counts that are multiples of 32, and the pipeline resizes the image to 224 px for
CLIP, so the vision encoder's image size is 224 (patches of 32: 49 tokens).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from .components import _diffusers, _hf

_LATENT = 4
_IMAGE_EMBEDDING = 32
_TIME_EMBEDDING = 8  # per added time id (fps, motion bucket, noise augmentation)


def _clip_image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor()


def svd(knobs: dict) -> dict[str, Callable[[], Any]]:
    width, heads = knobs["width"], knobs["heads"]
    return {
        "unet": partial(
            _diffusers,
            "UNetSpatioTemporalConditionModel",
            in_channels=2 * _LATENT,  # the noisy latents and the image's latents
            out_channels=_LATENT,
            block_out_channels=(width,) * 4,
            num_attention_heads=(heads,) * 4,
            layers_per_block=2,
            cross_attention_dim=_IMAGE_EMBEDDING,
            addition_time_embed_dim=_TIME_EMBEDDING,
            projection_class_embeddings_input_dim=3 * _TIME_EMBEDDING,
            num_frames=knobs["num_frames"],
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLTemporalDecoder",
            down_block_types=("DownEncoderBlock2D",) * 4,
            block_out_channels=(32,) * 4,
            layers_per_block=1,
            latent_channels=_LATENT,
        ),
        "image_encoder": partial(
            _hf, "CLIPVisionModelWithProjection", "CLIPVisionConfig", hidden_size=16, intermediate_size=32,
            num_hidden_layers=2, num_attention_heads=2, image_size=224, patch_size=32, projection_dim=_IMAGE_EMBEDDING,
        ),
        "feature_extractor": _clip_image_processor,
        # SVD's sampler: Euler on v-prediction over Karras sigmas from 0.002 to 700 (Stability AI's
        # generative-models, scripts/demo/streamlit_helpers VERSION2SPECS["svd"]: EDM, sigma_min 0.002, sigma_max 700).
        "scheduler": partial(
            _diffusers,
            "EulerDiscreteScheduler",
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            interpolation_type="linear",
            use_karras_sigmas=True,
            sigma_max=700.0,
            sigma_min=0.002,
            steps_offset=1,
            timestep_spacing="leading",
            timestep_type="continuous",
        ),
    }
