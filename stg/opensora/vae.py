"""Open-Sora 1.2's video VAE: the SDXL image VAE per frame, then a causal temporal VAE that packs 4 frames in 1.

Videos are taken in micro-frames of 17 (17 frames -> 5 latent frames; the temporal VAE pads the front of a clip to
a multiple of 4 frames and the decoder drops that padding again) and the latents are normalised with fixed
per-channel shift and scale. Equal to the original (hpcaitech/Open-Sora v1.2.0, ``opensora/models/vae/``) within
1e-5 in float32, as tests/test_opensora.py shows on data that code produced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin

# The SDXL VAE the released model uses (PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers, subfolder vae).
SDXL_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
    block_out_channels=(128, 256, 512, 512), act_fn="silu", sample_size=1024, scaling_factor=0.13025,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)


class CausalConv3d(torch.nn.Module):
    """A 3D convolution that sees only the current and earlier frames: the frames are padded in front only."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, time_stride: int = 1, bias: bool = True):
        super().__init__()
        self.time_pad = kernel - time_stride  # (kernel - 1) + (1 - stride)
        self.space_pad = kernel // 2
        self.conv = torch.nn.Conv3d(channels_in, channels_out, kernel, stride=(time_stride, 1, 1), bias=bias)

    def forward(self, x):
        p = self.space_pad
        return self.conv(F.pad(x, (p, p, p, p, self.time_pad, 0)))


class ResnetBlock3D(torch.nn.Module):
    def __init__(self, channels_in: int, channels_out: int, groups: int):
        super().__init__()
        self.norm1 = torch.nn.GroupNorm(groups, channels_in)
        self.conv1 = CausalConv3d(channels_in, channels_out, 3, bias=False)
        self.norm2 = torch.nn.GroupNorm(groups, channels_out)
        self.conv2 = CausalConv3d(channels_out, channels_out, 3, bias=False)
        same = channels_in == channels_out
        self.conv_shortcut = None if same else CausalConv3d(channels_in, channels_out, 1, bias=False)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.conv_shortcut is None else self.conv_shortcut(x))


def _resnets(channels_in: int, channels_out: int, count: int, groups: int) -> torch.nn.ModuleList:
    return torch.nn.ModuleList(
        [ResnetBlock3D(channels_in if k == 0 else channels_out, channels_out, groups) for k in range(count)]
    )


class TemporalEncoder(torch.nn.Module):
    """Resnet levels of widening channels; levels marked in `time_down` halve the frames with a strided conv."""

    def __init__(self, channels, latent_channels, base, multipliers, time_down, layers, groups):
        super().__init__()
        widths = [base * m for m in multipliers]
        self.conv_in = CausalConv3d(channels, base, 3, bias=False)
        self.down_blocks = torch.nn.ModuleList(
            [_resnets(widths[i - 1] if i else base, widths[i], layers, groups) for i in range(len(widths))]
        )
        # One per level but the last; a level that keeps the frame count has none (an identity).
        self.downsamplers = torch.nn.ModuleList(
            [CausalConv3d(widths[i], widths[i], 3, time_stride=2) if time_down[i] else torch.nn.Identity()
             for i in range(len(widths) - 1)]
        )
        self.mid_blocks = _resnets(widths[-1], widths[-1], layers, groups)
        self.norm_out = torch.nn.GroupNorm(groups, widths[-1])
        self.conv_out = CausalConv3d(widths[-1], 2 * latent_channels, 1)

    def forward(self, x):
        x = self.conv_in(x)
        for i, resnets in enumerate(self.down_blocks):
            for resnet in resnets:
                x = resnet(x)
            if i < len(self.downsamplers):
                x = self.downsamplers[i](x)
        for resnet in self.mid_blocks:
            x = resnet(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class TemporalDecoder(torch.nn.Module):
    """The encoder's mirror; a level marked in `time_down` doubles the frames (channels to time, depth-to-space)."""

    def __init__(self, channels, latent_channels, base, multipliers, time_down, layers, groups):
        super().__init__()
        widths = [base * m for m in multipliers]
        self.time_up = [2 if down else 1 for down in time_down]
        self.conv_in = CausalConv3d(latent_channels, widths[-1], 3)
        self.mid_blocks = _resnets(widths[-1], widths[-1], layers, groups)
        # up_blocks[i] maps level i + 1's width (the latent side) to level i's; they run from the last level down.
        self.up_blocks = torch.nn.ModuleList(
            [_resnets(widths[i + 1] if i + 1 < len(widths) else widths[-1], widths[i], layers, groups)
             for i in range(len(widths))]
        )
        # upsamplers[i] runs after up_blocks[i + 1].
        self.upsamplers = torch.nn.ModuleList(
            [CausalConv3d(widths[i + 1], widths[i + 1] * 2, 3) if time_down[i] else torch.nn.Identity()
             for i in range(len(widths) - 1)]
        )
        self.norm_out = torch.nn.GroupNorm(groups, widths[0])
        self.conv_out = CausalConv3d(widths[0], channels, 3)

    def forward(self, z):
        x = self.conv_in(z)
        for resnet in self.mid_blocks:
            x = resnet(x)
        for i in reversed(range(len(self.up_blocks))):
            for resnet in self.up_blocks[i]:
                x = resnet(x)
            if i > 0:
                x = self.upsamplers[i - 1](x)
                factor = self.time_up[i - 1]
                x = x.unflatten(1, (-1, factor)).permute(0, 1, 3, 2, 4, 5).flatten(2, 3)  # (C t) T -> C (T t)
        return self.conv_out(F.silu(self.norm_out(x)))


class TemporalVAE(torch.nn.Module):
    """Open-Sora 1.2's causal temporal VAE over the image VAE's latents (4 channels in, 4 latent channels out)."""

    def __init__(self, channels=4, latent_channels=4, base_channels=128, channel_multipliers=(1, 2, 2, 4),
                 temporal_downsample=(False, True, True), layers_per_block=4, norm_num_groups=32):
        super().__init__()
        args = (channels, latent_channels, base_channels, channel_multipliers, temporal_downsample,
                layers_per_block, norm_num_groups)
        self.time_factor = 2 ** sum(temporal_downsample)
        self.encoder = TemporalEncoder(*args)
        self.quant_conv = CausalConv3d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = CausalConv3d(latent_channels, latent_channels, 1)
        self.decoder = TemporalDecoder(*args)

    def front_padding(self, frames: int) -> int:
        return -frames % self.time_factor

    def latent_frames(self, frames: int) -> int:
        return (frames + self.front_padding(frames)) // self.time_factor

    def encode(self, x) -> DiagonalGaussianDistribution:
        x = F.pad(x, (0, 0, 0, 0, self.front_padding(x.shape[2]), 0))
        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))

    def decode(self, z, num_frames: int):
        return self.decoder(self.post_quant_conv(z))[:, :, self.front_padding(num_frames):]


class OpenSoraVAE(ModelMixin, ConfigMixin):
    """The video VAE: `spatial_vae` (an AutoencoderKL, per frame) then `temporal_vae`, in micro-frames.

    encode: [B, 3, F, H, W] in [-1, 1] -> normalised latents [B, 4, F', H / 8, W / 8], 17 frames -> 5 per micro-frame.
    decode(latents, num_frames) inverts it. The image VAE's latents are scaled by `spatial_scaling_factor` (the
    original uses 0.18215 with the SDXL VAE, not that VAE's own 0.13025), and the image VAE runs on at most
    `micro_batch_size` frames at a time (memory only: every frame is independent).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        spatial_config: dict | None = None,
        base_channels: int = 128,
        channel_multipliers: tuple[int, ...] = (1, 2, 2, 4),
        temporal_downsample: tuple[bool, ...] = (False, True, True),
        layers_per_block: int = 4,
        norm_num_groups: int = 32,
        latent_shift: tuple[float, ...] = (-0.10, 0.34, 0.27, 0.98),
        latent_scale: tuple[float, ...] = (3.85, 2.32, 2.33, 3.06),
        micro_frame_size: int = 17,
        micro_batch_size: int = 4,
        spatial_scaling_factor: float = 0.18215,
    ):
        super().__init__()
        self.spatial_vae = AutoencoderKL(**(spatial_config or SDXL_VAE_CONFIG))
        channels = self.spatial_vae.config.latent_channels
        self.temporal_vae = TemporalVAE(channels, channels, base_channels, tuple(channel_multipliers),
                                        tuple(temporal_downsample), layers_per_block, norm_num_groups)
        # Buffers, as in the checkpoint: latents = (temporal latents - shift) / scale, per channel.
        self.register_buffer("shift", torch.tensor(latent_shift)[None, :, None, None, None])
        self.register_buffer("scale", torch.tensor(latent_scale)[None, :, None, None, None])

    def latent_frames(self, num_frames: int) -> int:
        full, rest = divmod(num_frames, self.config.micro_frame_size)
        size = self.temporal_vae.latent_frames(self.config.micro_frame_size) * full
        return size + (self.temporal_vae.latent_frames(rest) if rest else 0)

    def _per_frame(self, x, run):
        frames = x.shape[2]
        flat = x.transpose(1, 2).flatten(0, 1)
        step = self.config.micro_batch_size
        out = torch.cat([run(flat[i : i + step]) for i in range(0, flat.shape[0], step)])
        return out.unflatten(0, (x.shape[0], frames)).transpose(1, 2)

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True):
        """Normalised latents of `video`; `sample=False` takes both posteriors' means instead of a draw."""
        draw = (lambda d: d.sample(generator)) if sample else (lambda d: d.mode())
        factor = self.config.spatial_scaling_factor
        x = self._per_frame(video, lambda f: draw(self.spatial_vae.encode(f).latent_dist) * factor)
        step = self.config.micro_frame_size
        z = torch.cat([draw(self.temporal_vae.encode(x[:, :, i : i + step])) for i in range(0, x.shape[2], step)], 2)
        return (z - self.shift) / self.scale

    def decode(self, latents: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Video [B, 3, num_frames, H, W] in about [-1, 1] from normalised latents."""
        z = latents * self.scale.to(latents.dtype) + self.shift.to(latents.dtype)
        step, z_step = self.config.micro_frame_size, self.temporal_vae.latent_frames(self.config.micro_frame_size)
        parts = []
        for k, i in enumerate(range(0, z.shape[2], z_step)):
            parts.append(self.temporal_vae.decode(z[:, :, i : i + z_step], min(step, num_frames - k * step)))
        x = torch.cat(parts, dim=2)
        factor = self.config.spatial_scaling_factor
        return self._per_frame(x, lambda f: self.spatial_vae.decode(f / factor).sample)
