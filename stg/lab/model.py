"""The lab model's components: an LTX-Video pipeline whose autoencoder compresses hard, so that a clip is few tokens.

The shipped model's VAE (`fine-latents`) cuts 2x2 pixel patches and then halves space and time twice
(`LTXVideoDownBlock3D` with spatio-temporal scaling): 8x in space and 4x in time into 12 channels, so 17 frames of
64x64 are 5 latent frames of 8x8, 320 tokens. The first lab model's (`full`) cut 4x4 patches, 16x in space into 48
channels (80 tokens), and lost most shapes: each of its tokens covered more of an object. The text encoder, tokenizer
(over the lab grammar's words), transformer and scheduler are the shapes model's, at the lab's sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..shapes import model as shapes_model
from .world import VOCABULARY

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "lab"  # the trained pipeline, in the repository


@dataclass(frozen=True)
class Sizes(shapes_model.TransformerSizes):
    """The knobs of one model size; `FINE_LATENTS` is the shipped model's, `FULL` the first lab model's, `TEST` what
    the tests train in seconds."""

    latent: int = 48  # latent channels per token (4 patches by 4 in space, 4 frames: 16x16 pixels at patch 4)
    patch: int = 4  # pixels per side of the VAE's input patches; two halvings follow
    vae_widths: tuple[int, int] = (32, 64)  # decoder channels at the patches' resolution, and one halving down
    encoder_widths: tuple[int, int] = (32, 64)  # the same for the encoder, which decides what the latents keep
    vae_layers: tuple[int, int, int] = (1, 1, 1)  # resnets per block and in the mid block, encoder and decoder alike


FULL = Sizes()
WIDE_ENCODER = Sizes(encoder_widths=(64, 128))
FINE_LATENTS = Sizes(latent=12, patch=2, vae_widths=(16, 32), encoder_widths=(16, 32))  # about FULL's VAE work a step
TEST = Sizes(width=32, heads=2, layers=2, latent=8, vae_widths=(8, 16), encoder_widths=(8, 16), text_width=16,
             text_layers=1)
SIZES = {"full": FULL, "wide-encoder": WIDE_ENCODER, "fine-latents": FINE_LATENTS, "test": TEST}


def vae(sizes: Sizes):
    from diffusers import AutoencoderKLLTXVideo

    return AutoencoderKLLTXVideo(
        latent_channels=sizes.latent, patch_size=sizes.patch, patch_size_t=1,
        block_out_channels=sizes.encoder_widths, decoder_block_out_channels=sizes.vae_widths,
        down_block_types=("LTXVideoDownBlock3D",) * 2, layers_per_block=sizes.vae_layers,
        decoder_layers_per_block=sizes.vae_layers, spatio_temporal_scaling=(True, True),
        decoder_spatio_temporal_scaling=(True, True), decoder_inject_noise=(False,) * 3,
        upsample_residual=(False, False), upsample_factor=(1, 1), timestep_conditioning=False)


def components(sizes: Sizes) -> dict:
    """Fresh components (random weights) of an `LTXPipeline`."""
    tok = shapes_model.tokenizer(VOCABULARY)
    return {"tokenizer": tok, "text_encoder": shapes_model.text_encoder(sizes, len(tok)), "vae": vae(sizes),
            "transformer": shapes_model.transformer(sizes), "scheduler": shapes_model.scheduler()}


def describe(sizes: Sizes) -> dict:
    return asdict(sizes)


scheduler = shapes_model.scheduler
