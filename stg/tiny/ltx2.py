"""Component factories of the tiny LTX-2: video and sound in one transformer with its own STG, Gemma 3 read through
text connectors, a video VAE, an audio VAE and a vocoder."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from .components import _diffusers, _heads, _hf, ltx
from .tokenizers import GEMMA_TOKENS, gemma_tokenizer, gemma_vocab

# The connectors read every hidden state of Gemma 3 (caption width x (layers + 1)); a tiny SigLIP tower completes
# the multimodal model the real checkpoint ships.
_GEMMA = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=8,
    max_position_embeddings=1024,
)
SIGLIP = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8)


def _gemma3_encoder():
    """Gemma 3 (multimodal, as LTX-2 ships it) over the tiny Gemma vocabulary."""
    ids = gemma_vocab()[0]
    tokens = {k.removesuffix("_token") + "_token_id": ids[v] for k, v in GEMMA_TOKENS.items() if k != "mask_token"}
    return _hf(
        "Gemma3ForConditionalGeneration",
        "Gemma3Config",
        text_config=dict(_GEMMA, vocab_size=len(ids), **tokens),
        vision_config=SIGLIP,
        mm_tokens_per_image=4,
    )


def ltx2(knobs: dict) -> dict[str, Callable[[], Any]]:
    """LTX-2 with `perturbed_attn` on, as Lightricks' STG needs it.

    The video VAE keeps LTX-2's 32x / 8x compression; the audio VAE's 2 latent channels x 4 latent mel bins make
    the audio tokens' 8 channels (its latents_mean has one entry per channel); the vocoder's 80x upsampling turns
    100 mel frames a second into 8 kHz sound, so that sound and video last about as long.
    """
    latent, mel_bins, audio_width = 8, 16, 16
    caption, layers = _GEMMA["hidden_size"], _GEMMA["num_hidden_layers"]
    heads = _heads(knobs)
    connector = dict(num_attention_heads=2, attention_head_dim=caption // 2, num_layers=1, num_learnable_registers=8)
    return {
        "transformer": partial(
            _diffusers,
            "LTX2VideoTransformer3DModel",
            in_channels=latent,
            out_channels=latent,
            num_attention_heads=heads["num_attention_heads"],
            attention_head_dim=heads["attention_head_dim"],
            cross_attention_dim=knobs["width"],
            audio_in_channels=2 * mel_bins // 4,
            audio_out_channels=2 * mel_bins // 4,
            audio_num_attention_heads=2,
            audio_attention_head_dim=audio_width // 2,
            audio_cross_attention_dim=audio_width,
            num_layers=knobs["num_layers"],
            caption_channels=caption,
            perturbed_attn=True,
        ),
        "connectors": partial(
            _diffusers,
            "pipelines.ltx2.LTX2TextConnectors",
            caption_channels=caption,
            text_proj_in_factor=layers + 1,
            **{f"{stream}_connector_{k}": v for stream in ("video", "audio") for k, v in connector.items()},
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLLTX2Video",
            latent_channels=latent,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 16, 32),  # the decoder's residual upsamplers need multiples of 8
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1),
            spatial_compression_ratio=32,
            temporal_compression_ratio=8,
        ),
        "audio_vae": partial(
            _diffusers,
            "AutoencoderKLLTX2Audio",
            base_channels=8,
            ch_mult=(1, 2),
            num_res_blocks=1,
            latent_channels=2,
            mel_bins=mel_bins,
            resolution=mel_bins,
        ),
        "vocoder": partial(
            _diffusers,
            "pipelines.ltx2.LTX2Vocoder",
            in_channels=2 * mel_bins,
            hidden_channels=16,
            upsample_kernel_sizes=[8, 8, 10],
            upsample_factors=[4, 4, 5],
            resnet_kernel_sizes=[3],
            resnet_dilations=[[1]],
            output_sampling_rate=8000,
        ),
        # LTX-2's scheduler: resolution-dependent shift, as for LTX-Video.
        "scheduler": ltx(knobs)["scheduler"],
        "text_encoder": _gemma3_encoder,
        "tokenizer": gemma_tokenizer,
    }
