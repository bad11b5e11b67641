"""Component factories of the tiny LTX-2: video and sound in one transformer with its own STG, Gemma 3 read through
text connectors, a video VAE, an audio VAE and a vocoder; and of the tiny LTX-2.5, the same classes with Gemma 4,
LTX-2.5's gated attention and a duration head."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from .components import _diffusers, _flow_match, _heads, _hf, ltx
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


def _gemma4_encoder():
    """Gemma 4 (`gemma4_unified`, as LTX-2.5 ships it) over the tiny Gemma vocabulary, with a tiny vision tower; its
    image, video and audio token ids stay outside the vocabulary, so text never reads as one."""
    ids = gemma_vocab()[0]
    text = dict(_GEMMA, vocab_size=len(ids), pad_token_id=ids["<pad>"], eos_token_id=ids["<eos>"],
                bos_token_id=ids["<bos>"], global_head_dim=_GEMMA["head_dim"], sliding_window=16,
                layer_types=["sliding_attention", "full_attention"])
    vision = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                  mm_embed_dim=8, output_proj_dims=_GEMMA["hidden_size"])
    return _hf("Gemma4UnifiedForConditionalGeneration", "Gemma4UnifiedConfig", text_config=text,
               vision_config=vision, audio_config=None)


def ltx25(knobs: dict) -> dict[str, Callable[[], Any]]:
    """LTX-2.5 as diffusers converts it (scripts/convert_ltx2_to_diffusers.py, version "2.5"): gated attention and
    cross-attention modulation in both streams, no video feed-forward bias, per-modality connector projections; a
    Gemma 4 text encoder; a duration head over the connectors' outputs; and the scheduler of its distilled
    transformer, which takes the distilled sigmas as given (no dynamic or terminal shift)."""
    parts = ltx2(knobs)
    caption = _GEMMA["hidden_size"]
    video_width = audio_width = caption  # the connectors' outputs: heads x head dimension, as in ltx2()
    stream = dict(gated_attn=True, cross_attn_mod=True, audio_gated_attn=True, audio_cross_attn_mod=True,
                  ff_bias=False)
    connectors = dict(video_gated_attn=True, audio_gated_attn=True, per_modality_projections=True,
                      video_hidden_dim=video_width, audio_hidden_dim=audio_width, proj_bias=True)
    for name, extra in (("transformer", stream), ("connectors", connectors)):
        factory = parts[name]
        parts[name] = partial(factory.func, *factory.args, **{**factory.keywords, **extra})
    parts.update(
        text_encoder=_gemma4_encoder,
        duration_head=partial(_diffusers, "pipelines.ltx2.LTX2DurationHead", video_cross_attention_dim=video_width,
                              audio_cross_attention_dim=audio_width, pooler_hidden_dim=16, num_pooler_heads=2,
                              mlp_hidden_dim=16),
        scheduler=_flow_match(use_dynamic_shifting=False, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                              max_image_seq_len=4096, shift_terminal=None),
    )
    return parts
