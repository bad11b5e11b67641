"""Open-Sora 1.2's STDiT3 as a diffusers model: pairs of spatial and temporal blocks over a video's patches.

Each block pair attends over the patches of one frame (spatial) and then over the frames at one patch position
(temporal, with rotary positions); each block also cross-attends to the text tokens and has its own adaLN table.
Equal to the original (hpcaitech/Open-Sora v1.2.0, ``opensora/models/stdit/stdit3.py``) within 1e-5 in float32,
as tests/test_opensora.py shows on data that code produced. The text rows are padded to one length and masked
here, where the original packs the kept tokens of every row into one sequence: the same attention, and a batch
whose rows can be taken apart (STG perturbs some rows of a batch only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import PixArtAlphaTextProjection, TimestepEmbedding, Timesteps, apply_rotary_emb
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin


class OpenSoraAttnProcessor:
    """Scaled dot-product attention with RMS-normed queries and keys and, where given, rotary positions."""

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 rotary_emb=None):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        query, key, value = (x.unflatten(-1, (attn.heads, -1)).transpose(1, 2) for x in (query, key, value))
        if attn.norm_q is not None:
            query, key = attn.norm_q(query), attn.norm_k(key)
        if rotary_emb is not None:
            query, key = apply_rotary_emb(query, rotary_emb), apply_rotary_emb(key, rotary_emb)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        hidden_states = hidden_states.transpose(1, 2).flatten(2).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](hidden_states))


class FrameRotaryEmbedding(torch.nn.Module):
    """Rotary positions over frames (pairs of adjacent channels rotate together), as `rotary_embedding_torch` does.

    The frequency table is a buffer of the checkpoint (``rope.freqs``), not a learned weight.
    """

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        self.register_buffer("freqs", 1.0 / theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))

    def forward(self, frames: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        angles = torch.arange(frames, device=device, dtype=dtype).to(self.freqs.dtype)[:, None] * self.freqs
        angles = angles.repeat_interleave(2, dim=-1)
        return angles.cos(), angles.sin()


def patch_position_embedding(dim: int, rows: int, cols: int, scale: float, device) -> torch.Tensor:
    """Sine-cosine positions of a rows x cols patch grid, [rows * cols, dim]: first the column, then the row.

    Coordinates are stretched so that the grid spans its square side (round(sqrt(rows * cols))) and divided by
    `scale` (the video's size relative to the model's base size).
    """
    half = dim // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, half, 2, device=device).float() / half))
    side = round((rows * cols) ** 0.5)
    row = torch.arange(rows, device=device) / scale * (side / rows)
    col = torch.arange(cols, device=device) / scale * (side / cols)
    row, col = row[:, None].expand(rows, cols).reshape(-1), col[None, :].expand(rows, cols).reshape(-1)

    def sincos(position):
        angles = position[:, None] * inv_freq[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    return torch.cat([sincos(col), sincos(row)], dim=-1)


class OpenSoraBlock(torch.nn.Module):
    """One spatial or temporal block: modulated self-attention, cross-attention to the text, modulated MLP.

    Tokens arrive as [batch, frames * patches, width]; `temporal` chooses which axis self-attention runs over.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.norm1 = torch.nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.attn1 = Attention(dim, heads=heads, dim_head=dim // heads, bias=True,
                               qk_norm="rms_norm" if qk_norm else None, eps=1e-6, processor=OpenSoraAttnProcessor())
        self.attn2 = Attention(dim, cross_attention_dim=dim, heads=heads, dim_head=dim // heads, bias=True,
                               processor=OpenSoraAttnProcessor())
        self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.ff = FeedForward(dim, inner_dim=int(dim * mlp_ratio), activation_fn="gelu-approximate")
        self.scale_shift_table = torch.nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, hidden_states, encoder_hidden_states, encoder_attention_mask, temb, frames: int,
                rotary_emb=None):
        batch, tokens, dim = hidden_states.shape
        patches = tokens // frames
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + temb.reshape(batch, 6, -1)
        ).chunk(6, dim=1)

        x = self.norm1(hidden_states) * (1 + scale_msa) + shift_msa
        if self.temporal:  # attend over frames, one sequence per patch position
            x = x.unflatten(1, (frames, patches)).transpose(1, 2).reshape(batch * patches, frames, dim)
            x = self.attn1(x, rotary_emb=rotary_emb)
            x = x.reshape(batch, patches, frames, dim).transpose(1, 2).reshape(batch, tokens, dim)
        else:  # attend over patches, one sequence per frame
            x = self.attn1(x.reshape(batch * frames, patches, dim)).reshape(batch, tokens, dim)
        hidden_states = hidden_states + gate_msa * x

        hidden_states = hidden_states + self.attn2(
            hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=encoder_attention_mask
        )
        x = self.norm2(hidden_states) * (1 + scale_mlp) + shift_mlp
        return hidden_states + gate_mlp * self.ff(x)


class OpenSoraTransformer3DModel(ModelMixin, ConfigMixin):
    """STDiT3: `num_layers` spatial blocks, each followed by a temporal one, over patches of the latent video.

    The forward takes the latent video, the flow timestep in [0, 1000], the T5 tokens with their mask, the frame
    rate and the video's pixel size (which scales the patch positions); it returns `out_channels` channels (8 for
    the released model: the velocity is the first 4).
    """

    _supports_gradient_checkpointing = False
    _no_split_modules = ["OpenSoraBlock"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 8,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        num_attention_heads: int = 16,
        attention_head_dim: int = 72,
        num_layers: int = 28,
        mlp_ratio: float = 4.0,
        caption_channels: int = 4096,
        max_text_length: int = 300,
        qk_norm: bool = True,
        base_size: int = 512,
    ):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        self.patch_embed = torch.nn.Module()
        self.patch_embed.proj = torch.nn.Conv3d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(256, dim)
        self.fps_embed = TimestepEmbedding(256, dim)
        self.time_modulation = torch.nn.Sequential(torch.nn.SiLU(), torch.nn.Linear(dim, 6 * dim))
        self.caption_projection = PixArtAlphaTextProjection(caption_channels, dim, act_fn="gelu_tanh")
        # The unconditional text: a learned [max_text_length, caption_channels] table in T5's space.
        self.register_buffer("y_embedding", torch.randn(max_text_length, caption_channels) / caption_channels**0.5)
        self.rope = FrameRotaryEmbedding(attention_head_dim)
        self.spatial_blocks = torch.nn.ModuleList(
            [OpenSoraBlock(dim, num_attention_heads, mlp_ratio, qk_norm, temporal=False) for _ in range(num_layers)]
        )
        self.temporal_blocks = torch.nn.ModuleList(
            [OpenSoraBlock(dim, num_attention_heads, mlp_ratio, qk_norm, temporal=True) for _ in range(num_layers)]
        )
        self.norm_out = torch.nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.scale_shift_table = torch.nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.proj_out = torch.nn.Linear(dim, math.prod(patch_size) * out_channels)

    def _embed_scalar(self, embedding: TimestepEmbedding, values: torch.Tensor, dtype) -> torch.Tensor:
        return embedding(self.time_proj(values).to(dtype))

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        fps: torch.Tensor | float = 24.0,
        height: float | torch.Tensor | None = None,
        width: float | torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        """hidden_states [B, C, T, H, W]; timestep [B]; encoder_hidden_states [B, L, caption_channels] with its
        mask [B, L] (1: a token, 0: padding); height and width in pixels (default: 8 per latent pixel)."""
        batch, _, frames_in, rows_in, cols_in = hidden_states.shape
        dtype = self.patch_embed.proj.weight.dtype
        pt, ph, pw = self.config.patch_size
        frames, rows, cols = -(-frames_in // pt), -(-rows_in // ph), -(-cols_in // pw)
        height = float(torch.as_tensor(height).flatten()[0]) if height is not None else 8.0 * rows_in
        width = float(torch.as_tensor(width).flatten()[0]) if width is not None else 8.0 * cols_in
        x = F.pad(hidden_states.to(dtype), (0, cols * pw - cols_in, 0, rows * ph - rows_in, 0, frames * pt - frames_in))
        x = self.patch_embed.proj(x).flatten(3).permute(0, 2, 3, 1)  # [B, T, S, C]
        scale = (height * width) ** 0.5 / self.config.base_size
        x = x + patch_position_embedding(x.shape[-1], rows, cols, scale, x.device).to(dtype)
        x = x.flatten(1, 2)

        timestep = timestep.to(dtype).expand(batch) if timestep.ndim else timestep.to(dtype).repeat(batch)
        fps = torch.as_tensor(fps, device=x.device, dtype=dtype).expand(batch)
        temb = self._embed_scalar(self.time_embed, timestep, dtype) + self._embed_scalar(self.fps_embed, fps, dtype)
        temb_blocks = self.time_modulation(temb)

        text = self.caption_projection(encoder_hidden_states.to(dtype))
        mask = None
        if encoder_attention_mask is not None:
            mask = encoder_attention_mask.bool()[:, None, None, :]  # [B, heads, queries, L]
        rotary = self.rope(frames, x.device, dtype)
        for spatial, temporal in zip(self.spatial_blocks, self.temporal_blocks):
            x = spatial(x, text, mask, temb_blocks, frames)
            x = temporal(x, text, mask, temb_blocks, frames, rotary_emb=rotary)

        shift, scale = (self.scale_shift_table[None] + temb[:, None]).chunk(2, dim=1)
        x = self.proj_out(self.norm_out(x) * (1 + scale) + shift)
        x = x.reshape(batch, frames, rows, cols, pt, ph, pw, -1)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(batch, -1, frames * pt, rows * ph, cols * pw)
        output = x[:, :, :frames_in, :rows_in, :cols_in].float()
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)
