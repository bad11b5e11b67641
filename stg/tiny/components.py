"""Component factories of every family's tiny pipeline: small configs with the real latent compression ratios and
patch sizes, so that each pipeline's own size rules (multiples of 32 px for LTX, 8n+1 frames, ...) still apply.

Each family's function maps the knobs (``num_layers``, ``width``, ``heads``, ...) to one factory per component;
factories import diffusers and transformers only when called.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from .tokenizers import (CLIP_TOKENS, LLAMA_TOKENS, clip_tokenizer, clip_vocab, llama_tokenizer, llama_vocab,
                         t5_tokenizer, t5_vocab)

# Text encoder shapes.
_T5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8)
_T5_DIM = _T5["d_model"]
# HunyuanVideo reads Llama's third-last hidden state: three layers leave one that does work.
_LLAMA = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
# Wan reads the CLIP image encoder's second-last hidden state: 16 patches + 1 class token.
_CLIP_VISION = dict(
    hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
)
_CLIP = dict(
    hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77
)


def _hf(model_cls: str, config_cls: str, **config):
    """A transformers model with random weights from a config (both named, imported lazily)."""
    import transformers

    return getattr(transformers, model_cls)(getattr(transformers, config_cls)(**config))


def _diffusers(cls: str, **config):
    """A diffusers model or scheduler from its config (named, imported lazily; "pipelines.ltx2.X" for a
    pipeline's own model class)."""
    import importlib

    module, _, name = cls.rpartition(".")
    return getattr(importlib.import_module(".".join(filter(None, ("diffusers", module)))), name)(**config)


def _t5_encoder(model_cls: str = "T5EncoderModel", config_cls: str = "T5Config"):
    """T5 v1.1-style encoder over the tiny T5 vocabulary (UMT5 for Wan)."""
    return partial(
        _hf,
        model_cls,
        config_cls,
        vocab_size=len(t5_vocab()),
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        **_T5,
    )


def _bpe_text_encoder(model_cls: str, config_cls: str, vocab: Callable, tokens: dict, config: dict):
    """A text encoder sized to a BPE vocabulary, with the tokenizer's bos / eos / pad ids."""
    ids = vocab()[0]
    return partial(
        _hf,
        model_cls,
        config_cls,
        vocab_size=len(ids),
        bos_token_id=ids[tokens["bos_token"]],
        eos_token_id=ids[tokens["eos_token"]],
        pad_token_id=ids[tokens["pad_token"]],
        **config,
    )


def _t5_text() -> dict[str, Callable[[], Any]]:
    return {"text_encoder": _t5_encoder(), "tokenizer": t5_tokenizer}


def _heads(knobs: dict) -> dict:
    """Transformer attention shape from the `width` (inner dim) and `heads` knobs."""
    width, heads = knobs["width"], knobs["heads"]
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")
    return dict(num_attention_heads=heads, attention_head_dim=width // heads, num_layers=knobs["num_layers"])


def _flow_match(**config):
    return partial(_diffusers, "FlowMatchEulerDiscreteScheduler", **config)


def ltx(knobs: dict) -> dict[str, Callable[[], Any]]:
    """LTX-Video: 8 latent channels; patchify 4 and three 2x stages give the real 32x / 8x compression."""
    latent = 8
    return {
        "transformer": partial(
            _diffusers,
            "LTXVideoTransformer3DModel",
            in_channels=latent,
            out_channels=latent,
            cross_attention_dim=knobs["width"],
            caption_channels=_T5_DIM,
            **_heads(knobs),
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLLTXVideo",
            latent_channels=latent,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            patch_size=4,
            patch_size_t=1,
        ),
        # LTX-Video 0.9's scheduler: resolution-dependent shift.
        "scheduler": _flow_match(
            use_dynamic_shifting=True,
            base_shift=0.95,
            max_shift=2.05,
            base_image_seq_len=1024,
            max_image_seq_len=4096,
            shift_terminal=0.1,
        ),
        **_t5_text(),
    }


def _wan_transformer(knobs: dict, **extra):
    config = dict(
        patch_size=(1, 2, 2),
        in_channels=16,
        out_channels=16,
        text_dim=_T5_DIM,
        freq_dim=32,
        ffn_dim=2 * knobs["width"],
        rope_max_seq_len=32,
        **_heads(knobs),
    )
    return partial(_diffusers, "WanTransformer3DModel", **{**config, **extra})


def wan(knobs: dict) -> dict[str, Callable[[], Any]]:
    """Wan 2.1 text-to-video: 16 latent channels (the pipeline's latents_mean has 16), 8x / 4x VAE."""
    return {
        "transformer": _wan_transformer(knobs),
        "vae": partial(
            _diffusers, "AutoencoderKLWan", base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1
        ),
        # Wan 2.1's own scheduler choice.
        "scheduler": partial(
            _diffusers,
            "UniPCMultistepScheduler",
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=3.0,
        ),
        "text_encoder": _t5_encoder("UMT5EncoderModel", "UMT5Config"),
        "tokenizer": t5_tokenizer,
    }


def _clip_image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def wan_i2v(knobs: dict) -> dict[str, Callable[[], Any]]:
    """Wan 2.1 image-to-video: 36 input channels (noise 16, mask 4, image latents 16), CLIP image tokens."""
    parts = wan(knobs)
    parts["transformer"] = _wan_transformer(
        knobs, in_channels=36, image_dim=_CLIP_VISION["hidden_size"], added_kv_proj_dim=knobs["width"]
    )
    parts["image_encoder"] = partial(_hf, "CLIPVisionModel", "CLIPVisionConfig", **_CLIP_VISION)
    parts["image_processor"] = _clip_image_processor
    return parts


def wan22(knobs: dict, i2v: bool = False) -> dict[str, Callable[[], Any]]:
    """Wan 2.2 A14B: a high-noise expert (transformer) and a low-noise one (transformer_2), as Wan 2.1 blocks.

    Image-to-video A14B takes the image as 20 channels of condition latents (mask 4, image 16) and no CLIP.
    """
    parts = wan(knobs)
    extra = {"in_channels": 36} if i2v else {}
    parts["transformer"] = _wan_transformer(knobs, **extra)
    parts["transformer_2"] = _wan_transformer(knobs, **extra)
    return parts


def wan22_ti2v(knobs: dict) -> dict[str, Callable[[], Any]]:
    """Wan 2.2 TI2V-5B: one transformer over the Wan 2.2 VAE's 48 channels (16x space after its 2x2 patch)."""
    z_dim = 48
    parts = wan(knobs)
    parts["transformer"] = _wan_transformer(knobs, in_channels=z_dim, out_channels=z_dim)
    parts["vae"] = partial(
        _diffusers,
        "AutoencoderKLWan",
        base_dim=8,
        decoder_base_dim=8,
        z_dim=z_dim,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )
    return parts


def cogvideox(knobs: dict, i2v: bool = False) -> dict[str, Callable[[], Any]]:
    """CogVideoX: 8x / 4x VAE; text-to-video uses sin-cos positions (2B), image-to-video RoPE (5B)."""
    latent = 4
    return {
        "transformer": partial(
            _diffusers,
            "CogVideoXTransformer3DModel",
            in_channels=2 * latent if i2v else latent,
            out_channels=latent,
            time_embed_dim=8,
            text_embed_dim=_T5_DIM,
            sample_width=4,
            sample_height=4,
            sample_frames=9,
            patch_size=2,
            use_rotary_positional_embeddings=i2v,
            **_heads(knobs),
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLCogVideoX",
            block_out_channels=(8, 8, 8, 8),
            latent_channels=latent,
            layers_per_block=1,
            norm_num_groups=2,
            scaling_factor=0.7 if i2v else 1.15258426,
        ),
        "scheduler": partial(
            _diffusers,
            "CogVideoXDDIMScheduler",
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            prediction_type="v_prediction",
            rescale_betas_zero_snr=True,
            timestep_spacing="trailing",
            snr_shift_scale=1.0 if i2v else 3.0,
        ),
        **_t5_text(),
    }


def mochi(knobs: dict) -> dict[str, Callable[[], Any]]:
    """Mochi: 12 latent channels (its latents_mean has 12), 8x / 6x VAE; group norms need 32 channels."""
    return {
        "transformer": partial(
            _diffusers,
            "MochiTransformer3DModel",
            patch_size=2,
            pooled_projection_dim=16,
            in_channels=12,
            text_embed_dim=_T5_DIM,
            time_embed_dim=4,
            **_heads(knobs),
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLMochi",
            latent_channels=12,
            encoder_block_out_channels=(32, 32, 32, 32),
            decoder_block_out_channels=(32, 32, 32, 32),
            layers_per_block=(1, 1, 1, 1, 1),
        ),
        "scheduler": _flow_match(),
        **_t5_text(),
    }


def hunyuan_video(knobs: dict) -> dict[str, Callable[[], Any]]:
    """HunyuanVideo: dual- then single-stream blocks; Llama text states plus a pooled CLIP vector."""
    heads = _heads(knobs)
    head_dim = heads["attention_head_dim"]
    if head_dim % 16:
        raise ValueError(f"HunyuanVideo's 3-axis RoPE needs a head dim that is a multiple of 16: {head_dim}")
    rope_t = head_dim // 4
    return {
        "transformer": partial(
            _diffusers,
            "HunyuanVideoTransformer3DModel",
            in_channels=4,
            out_channels=4,
            num_single_layers=knobs["num_single_layers"],
            num_refiner_layers=1,
            mlp_ratio=2.0,
            patch_size=2,
            patch_size_t=1,
            text_embed_dim=_LLAMA["hidden_size"],
            pooled_projection_dim=_CLIP["hidden_size"],
            rope_axes_dim=(rope_t, (head_dim - rope_t) // 2, (head_dim - rope_t) // 2),
            **heads,
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLHunyuanVideo",
            latent_channels=4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            norm_num_groups=4,
        ),
        "scheduler": _flow_match(shift=7.0),
        "text_encoder": _bpe_text_encoder("LlamaModel", "LlamaConfig", llama_vocab, LLAMA_TOKENS, _LLAMA),
        "tokenizer": llama_tokenizer,
        "text_encoder_2": _bpe_text_encoder("CLIPTextModel", "CLIPTextConfig", clip_vocab, CLIP_TOKENS, _CLIP),
        "tokenizer_2": clip_tokenizer,
    }
