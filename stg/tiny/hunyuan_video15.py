"""Component factories of the tiny HunyuanVideo 1.5: dual-stream blocks over video, Qwen2.5-VL text, ByT5 glyph
text and SigLIP image tokens, with CFG as a guider component."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from .components import _diffusers, _flow_match, _heads, _hf
from .ltx2 import SIGLIP
from .tokenizers import QWEN_TOKENS, byt5_tokenizer, qwen_tokenizer, qwen_vocab

# The pipeline reads Qwen2.5-VL's third-last hidden state (three layers leave one that does work).
_QWEN = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=2048,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]},
)
_BYT5 = dict(d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, relative_attention_num_buckets=8)


def _siglip_image_processor():
    from transformers import SiglipImageProcessor

    return SiglipImageProcessor(size={"height": 16, "width": 16})


def hunyuan_video15(knobs: dict, i2v: bool = False) -> dict[str, Callable[[], Any]]:
    """The transformer takes noise, condition latents and a mask (4 + 4 + 1 channels); its target size is 32 px."""
    latent = 4
    heads = _heads(knobs)
    head_dim = heads["attention_head_dim"]
    rope_t = head_dim // 4
    qwen_ids = qwen_vocab()[0]
    parts = {
        "transformer": partial(
            _diffusers,
            "HunyuanVideo15Transformer3DModel",
            in_channels=2 * latent + 1,
            out_channels=latent,
            num_refiner_layers=1,
            mlp_ratio=2.0,
            text_embed_dim=_QWEN["hidden_size"],
            text_embed_2_dim=_BYT5["d_model"],
            image_embed_dim=SIGLIP["hidden_size"],
            rope_axes_dim=(rope_t, (head_dim - rope_t) // 2, (head_dim - rope_t) // 2),
            target_size=32,
            task_type="i2v" if i2v else "t2v",
            **heads,
        ),
        "vae": partial(
            _diffusers, "AutoencoderKLHunyuanVideo15", latent_channels=latent, block_out_channels=(8,) * 5,
            layers_per_block=1,
        ),
        "scheduler": _flow_match(shift=5.0),
        "text_encoder": partial(
            _hf, "Qwen2_5_VLTextModel", "Qwen2_5_VLTextConfig", vocab_size=len(qwen_ids), bos_token_id=None,
            eos_token_id=qwen_ids[QWEN_TOKENS["eos_token"]], **_QWEN,
        ),
        "tokenizer": qwen_tokenizer,
        "text_encoder_2": partial(
            _hf, "T5EncoderModel", "T5Config", vocab_size=384, feed_forward_proj="gated-gelu", dropout_rate=0.0, **_BYT5
        ),
        "tokenizer_2": byt5_tokenizer,
        "guider": partial(_diffusers, "ClassifierFreeGuidance", guidance_scale=6.0),
    }
    if i2v:
        parts["image_encoder"] = partial(_hf, "SiglipVisionModel", "SiglipVisionConfig", **SIGLIP)
        parts["feature_extractor"] = _siglip_image_processor
    return parts
