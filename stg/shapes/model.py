"""The shapes model's components: an LTX-Video pipeline small enough to train and run on a laptop CPU.

The VAE is a pixel-unshuffle autoencoder (8x8 patches, no down- or upsampling blocks), so a 32 px frame is 4x4
latent tokens and each frame its own latent frame: 144 tokens for 9 frames, few enough to train on a CPU; the
transformer is an ordinary `LTXVideoTransformer3DModel`; the text encoder a two-layer T5 over a vocabulary of the
grammar's words (and single characters, so any prompt still encodes).
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass
from pathlib import Path

from .scenes import VOCABULARY

_WORDPIECE = "\u2581"  # SentencePiece's word-start marker
SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "shapes"  # the trained pipeline, in the repository


@dataclass(frozen=True)
class TransformerSizes:
    """The knobs every grammar-trained model has: its transformer, its text encoder, its latent tokens."""

    width: int = 128  # transformer inner dim
    heads: int = 4
    layers: int = 8
    latent: int = 32  # latent channels per 8x8 patch of pixels
    text_width: int = 64
    text_layers: int = 2
    patch: int = 8  # pixels per latent token side (the VAE's spatial compression)


@dataclass(frozen=True)
class Sizes(TransformerSizes):
    """The knobs of one model size; `FULL` is the shipped model, `TEST` what the tests train in seconds."""

    vae_width: int = 128
    vae_layers: tuple[int, int] = (1, 1)  # encoder resnets: main block, mid block
    vae_decoder_layers: tuple[int, int] = (2, 1)  # decoder resnets: mid block, main block


FULL = Sizes()
TEST = Sizes(width=32, heads=2, layers=2, latent=8, vae_width=16, text_width=16, text_layers=1)
SIZES = {"full": FULL, "test": TEST}


def tokenizer(vocabulary: tuple[str, ...] = VOCABULARY):
    """T5 unigram tokenizer: the grammar's words whole (lower case and capitalised), other text by characters."""
    from transformers import T5TokenizerFast

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), (_WORDPIECE, -2.0)]
    chars = [(c, -5.0) for c in string.ascii_letters + string.digits + string.punctuation]
    words = [(_WORDPIECE + w, -1.0) for w in vocabulary] + [(_WORDPIECE + w.capitalize(), -1.5) for w in vocabulary]
    return T5TokenizerFast(vocab=specials + chars + words, extra_ids=0)


def text_encoder(sizes: Sizes, vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=vocab_size, d_model=sizes.text_width, d_kv=sizes.text_width // 4, d_ff=2 * sizes.text_width,
        num_layers=sizes.text_layers, num_heads=4, relative_attention_num_buckets=16,
        relative_attention_max_distance=32, feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0,
        eos_token_id=1, decoder_start_token_id=0))


def vae(sizes: Sizes):
    from diffusers import AutoencoderKLLTXVideo

    return AutoencoderKLLTXVideo(
        latent_channels=sizes.latent, patch_size=sizes.patch, patch_size_t=1,
        block_out_channels=(sizes.vae_width,), decoder_block_out_channels=(sizes.vae_width,),
        down_block_types=("LTXVideoDownBlock3D",), layers_per_block=sizes.vae_layers,
        decoder_layers_per_block=tuple(reversed(sizes.vae_decoder_layers)),
        spatio_temporal_scaling=(False,), decoder_spatio_temporal_scaling=(False,),
        decoder_inject_noise=(False, False), upsample_residual=(False,), upsample_factor=(1,),
        timestep_conditioning=False)


def transformer(sizes: Sizes):
    from diffusers import LTXVideoTransformer3DModel

    return LTXVideoTransformer3DModel(
        in_channels=sizes.latent, out_channels=sizes.latent, patch_size=1, patch_size_t=1,
        num_attention_heads=sizes.heads, attention_head_dim=sizes.width // sizes.heads,
        cross_attention_dim=sizes.width, num_layers=sizes.layers, caption_channels=sizes.text_width)


def scheduler(shift: float = 1.0):
    """Euler flow matching with a fixed shift: no resolution-dependent `mu`, so training and sampling agree."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=shift)


def components(sizes: Sizes) -> dict:
    """Fresh components (random weights) of an `LTXPipeline`."""
    tok = tokenizer()
    return {"tokenizer": tok, "text_encoder": text_encoder(sizes, len(tok)), "vae": vae(sizes),
            "transformer": transformer(sizes), "scheduler": scheduler()}


def describe(sizes: Sizes) -> dict:
    return asdict(sizes)
