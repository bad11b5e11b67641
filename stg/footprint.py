"""What a loaded model asks of a GPU: memory (its weights as loaded, and the activations of one transformer forward)
and work (the FLOPs of the transformer passes a request plans), read from the pipeline and its configs.

The activation and FLOP figures are estimates with stated constants, not measurements: they decide which GPU a
request gets and for how long, before anything runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

# Values per token, per hidden unit, alive at the peak of one block's forward for one batch row, counted as a DiT
# block keeps them under torch.no_grad with flash/memory-efficient attention (no tokens x tokens matrix): the
# residual stream and its normalised, modulated copy (2), query, key and value (3), the attention output (1), a
# feed-forward intermediate of about 4 widths and its activation (8), and the block output (1); 16 rounds them up.
ACTIVATION_WIDTHS = 16

# Where each pipeline class keeps its autoencoder's compression (pixels per latent pixel, frames per latent frame).
_COMPRESSION_ATTRIBUTES = (
    ("vae_spatial_compression_ratio", "vae_temporal_compression_ratio"),  # LTX-Video, LTX-2
    ("vae_scale_factor_spatial", "vae_scale_factor_temporal"),  # Wan, CogVideoX, HunyuanVideo (1.5)
    ("vae_spatial_scale_factor", "vae_temporal_scale_factor"),  # Mochi
    ("vae_scale_factor", None),  # Stable Video Diffusion: an image autoencoder, one latent frame per frame
)


@dataclass(frozen=True)
class Footprint:
    """A loaded model's sizes: every weight on the GPU, the transformer that runs a pass, and its token grid."""

    weight_bytes: int  # parameters and buffers of every component, at the dtype each is stored in
    transformer_params: int  # of one transformer (one expert where there are two: a pass runs one of them)
    width: int  # the transformer's hidden size (heads x head dimension)
    depth: int  # its main blocks
    spatial: int  # pixels per token along height and width (autoencoder compression x patch size)
    temporal: int  # frames per latent frame (autoencoder compression x temporal patch size)
    activation_bytes: int  # bytes per activation value (the compute dtype)
    factorized: bool = False  # attention within each frame and along time apart (Open-Sora), not over all tokens
    unet: tuple | None = None  # (class, config) of a UNet (SVD): its layers work at several resolutions, so its
    # FLOPs are counted by running it on fake tensors rather than by the per-token formula

    def tokens(self, num_frames: int, height: int, width: int) -> int:
        """Video tokens of one row: latent frames x latent height x latent width, after patching."""
        frames = (num_frames - 1) // self.temporal + 1
        return frames * math.ceil(height / self.spatial) * math.ceil(width / self.spatial)

    def row_bytes(self, num_frames: int, height: int, width: int) -> int:
        """Activation memory of one batch row at the peak of a block's forward."""
        return ACTIVATION_WIDTHS * self.tokens(num_frames, height, width) * self.width * self.activation_bytes

    def pass_flops(self, num_frames: int, height: int, width: int) -> float:
        """FLOPs of one full pass of one row. A transformer: 2 per parameter per token for the matrix products, and
        4 x width per pair of tokens that attend to each other per block, for attention's scores and weighted sum
        (all pairs; with factorized attention, pairs within a frame and pairs at one place). Text and sound tokens
        are left out (a few hundred against thousands of video tokens). A UNet: counted, every layer at its own
        resolution."""
        if self.unet is not None:
            unet_class, config = self.unet
            return _unet_pass_flops(unet_class, json.dumps(dict(config), default=str), num_frames,
                                    math.ceil(height / self.spatial), math.ceil(width / self.spatial))
        tokens = self.tokens(num_frames, height, width)
        frames = (num_frames - 1) // self.temporal + 1
        pairs = tokens * (tokens // frames + frames) if self.factorized else tokens ** 2
        return 2.0 * self.transformer_params * tokens + 4.0 * self.depth * self.width * pairs


@cache
def _unet_pass_flops(unet_class: type, config: str, frames: int, height: int, width: int) -> float:
    """The FLOPs torch counts in one forward of a spatio-temporal UNet built from its config on fake tensors (no
    memory, no arithmetic: about 2 s for SVD's 1.5B parameters), for one row of `frames` latents of that size."""
    config = json.loads(config)
    with FakeTensorMode(), FlopCounterMode(display=False) as counter:
        unet = unet_class.from_config(config)
        time_ids = config["projection_class_embeddings_input_dim"] // config["addition_time_embed_dim"]
        unet(torch.zeros(1, frames, config["in_channels"], height, width), torch.ones(1),
             torch.zeros(1, 1, config["cross_attention_dim"]), torch.zeros(1, time_ids))
    return float(counter.get_total_flops())


def measure(pipe, transformer, depth: int, factorized: bool = False) -> Footprint:
    """The footprint of a loaded pipeline whose passes run on `transformer` (of `depth` main blocks; `factorized`:
    its attention runs within frames and along time apart)."""
    weight_bytes = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in [*component.parameters(), *component.buffers()]:
                weight_bytes += tensor.numel() * tensor.element_size()
    config = transformer.config
    patch = config.get("patch_size") or 1
    patch_t, patch = (patch[0], patch[-1]) if isinstance(patch, (tuple, list)) else (config.get("patch_size_t") or 1,
                                                                                     patch)
    spatial, temporal = _compression(pipe)
    return Footprint(
        weight_bytes=weight_bytes,
        transformer_params=sum(p.numel() for p in transformer.parameters()),
        # A UNet (SVD) has no one width: its first level's, where its tokens are most numerous.
        width=config["block_out_channels"][0] if "block_out_channels" in config
        else config["num_attention_heads"] * config["attention_head_dim"],
        depth=depth,
        spatial=spatial * patch,
        temporal=temporal * patch_t,
        # fp8 storage leaves norms and embeddings in the compute dtype: the widest parameter is what layers compute in
        activation_bytes=max(p.element_size() for p in transformer.parameters() if p.is_floating_point()),
        factorized=factorized,
        unet=(type(transformer), config) if "block_out_channels" in config else None,
    )


def _compression(pipe) -> tuple[int, int]:
    for spatial, temporal in _COMPRESSION_ATTRIBUTES:
        if hasattr(pipe, spatial) and (temporal is None or hasattr(pipe, temporal)):
            return int(getattr(pipe, spatial)), int(getattr(pipe, temporal)) if temporal else 1
    raise ValueError(f"model: {type(pipe).__name__} names no autoencoder compression that STG Studio knows")
