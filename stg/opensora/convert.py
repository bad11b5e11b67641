"""Open-Sora 1.2's hub checkpoints to this package's diffusers form, and back.

The hub holds the transformer (hpcai-tech/OpenSora-STDiT-v3) and the video VAE (hpcai-tech/OpenSora-VAE-v1.2) as
transformers-style folders: ``config.json`` and ``model.safetensors`` in the original code's key names. This
renames the keys (splitting fused q/k/v projections), keeps every tensor, the learned null text ``y_embedding``
included, and writes a pipeline folder that ``OpenSoraPipeline.from_pretrained`` loads::

    python -m stg.opensora.convert --transformer STDiT-v3/ --vae VAE-v1.2/ --t5 t5-v1_1-xxl/ --output open-sora-1.2/

``--t5`` is DeepFloyd/t5-v1_1-xxl (tokenizer and encoder, as Open-Sora 1.2's configs name it). A VAE checkpoint
without the SDXL image VAE's weights takes them from ``--spatial-vae`` (a diffusers AutoencoderKL folder).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import torch

# (original, ours) key fragments: each key holds at most one; a key with none keeps its name. A fragment that starts
# with a dot is found anywhere in a key, any other only at its start.
TRANSFORMER_RENAMES = (
    ("x_embedder.proj.", "patch_embed.proj."),
    ("t_embedder.mlp.0.", "time_embed.linear_1."),
    ("t_embedder.mlp.2.", "time_embed.linear_2."),
    ("fps_embedder.mlp.0.", "fps_embed.linear_1."),
    ("fps_embedder.mlp.2.", "fps_embed.linear_2."),
    ("t_block.", "time_modulation."),
    ("y_embedder.y_proj.fc1.", "caption_projection.linear_1."),
    ("y_embedder.y_proj.fc2.", "caption_projection.linear_2."),
    ("y_embedder.y_embedding", "y_embedding"),
    ("final_layer.linear.", "proj_out."),
    ("final_layer.scale_shift_table", "scale_shift_table"),
    (".attn.q_norm.", ".attn1.norm_q."),
    (".attn.k_norm.", ".attn1.norm_k."),
    (".attn.proj.", ".attn1.to_out.0."),
    (".cross_attn.q_linear.", ".attn2.to_q."),
    (".cross_attn.proj.", ".attn2.to_out.0."),
    (".mlp.fc1.", ".ff.net.0.proj."),
    (".mlp.fc2.", ".ff.net.2."),
)
# Fused projections of the original, split in equal parts along the output features.
TRANSFORMER_SPLITS = (
    (".attn.qkv.", (".attn1.to_q.", ".attn1.to_k.", ".attn1.to_v.")),
    (".cross_attn.kv_linear.", (".attn2.to_k.", ".attn2.to_v.")),
)
VAE_RENAMES = (
    ("spatial_vae.module.", "spatial_vae."),
    ("temporal_vae.encoder.block_res_blocks.", "temporal_vae.encoder.down_blocks."),
    ("temporal_vae.encoder.conv_blocks.", "temporal_vae.encoder.downsamplers."),
    ("temporal_vae.encoder.res_blocks.", "temporal_vae.encoder.mid_blocks."),
    ("temporal_vae.encoder.norm1.", "temporal_vae.encoder.norm_out."),
    ("temporal_vae.encoder.conv2.", "temporal_vae.encoder.conv_out."),
    ("temporal_vae.decoder.conv1.", "temporal_vae.decoder.conv_in."),
    ("temporal_vae.decoder.res_blocks.", "temporal_vae.decoder.mid_blocks."),
    ("temporal_vae.decoder.block_res_blocks.", "temporal_vae.decoder.up_blocks."),
    ("temporal_vae.decoder.conv_blocks.", "temporal_vae.decoder.upsamplers."),
    ("temporal_vae.decoder.norm1.", "temporal_vae.decoder.norm_out."),
)
# Inside the temporal VAE's resnets, after the renames above.
VAE_RESNET_RENAMES = ((".conv3.", ".conv_shortcut."),)


def _rename(key: str, renames, reverse: bool) -> str:
    for original, ours in renames:
        old, new = (ours, original) if reverse else (original, ours)
        if old in key if old.startswith(".") else key.startswith(old):
            return key.replace(old, new, 1)
    return key


def transformer_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        split = next(((fused, parts) for fused, parts in TRANSFORMER_SPLITS if fused in key), None)
        if split is None:
            out[_rename(key, TRANSFORMER_RENAMES, reverse=False)] = value
            continue
        fused, parts = split
        for part, chunk in zip(parts, value.chunk(len(parts), dim=0)):
            out[key.replace(fused, part, 1)] = chunk.clone()
    return out


def transformer_from_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        split = next(((fused, parts) for fused, parts in TRANSFORMER_SPLITS if parts[0] in key), None)
        if split is not None:
            fused, parts = split
            out[key.replace(parts[0], fused, 1)] = torch.cat([state[key.replace(parts[0], p, 1)] for p in parts])
        elif not any(p in key for _, parts in TRANSFORMER_SPLITS for p in parts[1:]):
            out[_rename(key, TRANSFORMER_RENAMES, reverse=True)] = value
    return out


def _resnet_rename(key: str, reverse: bool) -> str:
    return _rename(key, VAE_RESNET_RENAMES, reverse) if key.startswith("temporal_vae.") else key


def vae_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {_resnet_rename(_rename(k, VAE_RENAMES, reverse=False), False): v for k, v in state.items()}


def vae_from_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {_rename(_resnet_rename(k, True), VAE_RENAMES, reverse=True): v for k, v in state.items()}


def transformer_config(original: dict) -> dict:
    """OpenSoraTransformer3DModel's config from STDiT3's config.json (STDiT3Config's defaults where absent)."""
    in_channels = original.get("in_channels", 4)
    return dict(
        in_channels=in_channels,
        out_channels=in_channels * 2 if original.get("pred_sigma", True) else in_channels,
        patch_size=tuple(original.get("patch_size", (1, 2, 2))),
        num_attention_heads=original.get("num_heads", 16),
        attention_head_dim=original.get("hidden_size", 1152) // original.get("num_heads", 16),
        num_layers=original.get("depth", 28),
        mlp_ratio=original.get("mlp_ratio", 4.0),
        caption_channels=original.get("caption_channels", 4096),
        max_text_length=original.get("model_max_length", 300),
        qk_norm=original.get("qk_norm", True),
        base_size=original.get("input_sq_size", 512),
    )


# VAE_Temporal_SD's shape (opensora/models/vae/vae_temporal.py): the checkpoint's config names only that type.
TEMPORAL_VAE_SD = dict(filters=128, num_res_blocks=4, channel_multipliers=(1, 2, 2, 4),
                       temporal_downsample=(False, True, True), num_groups=32)


def vae_config(original: dict, state: dict[str, torch.Tensor], spatial_config: dict) -> dict:
    """OpenSoraVAE's config from the VAE's config.json: the temporal VAE's shape (VAE_Temporal_SD's where the
    config does not give it), micro-frames and micro-batches; shift and scale from the checkpoint's own buffers."""
    given = original.get("vae_temporal", {})
    temporal = {**TEMPORAL_VAE_SD, **{k: v for k, v in given.items() if k in TEMPORAL_VAE_SD}}
    return dict(
        spatial_config=spatial_config,
        base_channels=temporal["filters"],
        channel_multipliers=tuple(temporal["channel_multipliers"]),
        temporal_downsample=tuple(temporal["temporal_downsample"]),
        layers_per_block=temporal["num_res_blocks"],
        norm_num_groups=temporal["num_groups"],
        latent_shift=[float(x) for x in state["shift"].flatten()],
        latent_scale=[float(x) for x in state["scale"].flatten()],
        micro_frame_size=original.get("micro_frame_size", 17),
        micro_batch_size=original.get("vae_2d", {}).get("micro_batch_size") or 4,
    )


def _load_safetensors(folder: pathlib.Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors file")
    state = {}
    for file in files:
        state.update(load_file(file))
    return state


def convert_transformer(folder: pathlib.Path):
    from .transformer import OpenSoraTransformer3DModel

    config = json.loads((folder / "config.json").read_text())
    model = OpenSoraTransformer3DModel(**transformer_config(config))
    model.load_state_dict(transformer_to_diffusers(_load_safetensors(folder)), strict=True)
    return model


def convert_vae(folder: pathlib.Path, spatial_vae: pathlib.Path | None = None):
    """The VAE checkpoint as an OpenSoraVAE. `spatial_vae` (a diffusers AutoencoderKL folder) gives the image VAE's
    config (SDXL's otherwise), and its weights where the checkpoint lacks them."""
    from diffusers import AutoencoderKL

    from .vae import SDXL_VAE_CONFIG, OpenSoraVAE

    state = vae_to_diffusers(_load_safetensors(folder))
    config_file = folder / "config.json"
    original = json.loads(config_file.read_text()) if config_file.exists() else {}
    image_vae = AutoencoderKL.from_pretrained(spatial_vae) if spatial_vae else None
    spatial_config = {k: v for k, v in image_vae.config.items() if not k.startswith("_")} if image_vae else None
    model = OpenSoraVAE(**vae_config(original, state, spatial_config or SDXL_VAE_CONFIG))
    if not any(k.startswith("spatial_vae.") for k in state):
        if image_vae is None:
            raise ValueError(f"{folder}: the checkpoint has no spatial_vae.* weights; pass --spatial-vae")
        state.update({f"spatial_vae.{k}": v for k, v in image_vae.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m stg.opensora.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--transformer", type=pathlib.Path, required=True, help="hpcai-tech/OpenSora-STDiT-v3 folder")
    parser.add_argument("--vae", type=pathlib.Path, required=True, help="hpcai-tech/OpenSora-VAE-v1.2 folder")
    parser.add_argument("--t5", type=pathlib.Path, required=True, help="DeepFloyd/t5-v1_1-xxl folder")
    parser.add_argument("--spatial-vae", type=pathlib.Path, help="AutoencoderKL folder, if --vae lacks its weights")
    parser.add_argument("--output", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)

    from transformers import T5EncoderModel, T5TokenizerFast

    from .pipeline import OpenSoraPipeline
    from .scheduler import OpenSoraRFlowScheduler

    pipe = OpenSoraPipeline(
        tokenizer=T5TokenizerFast.from_pretrained(args.t5),
        text_encoder=T5EncoderModel.from_pretrained(args.t5),
        transformer=convert_transformer(args.transformer),
        vae=convert_vae(args.vae, args.spatial_vae),
        scheduler=OpenSoraRFlowScheduler(),
    )
    pipe.save_pretrained(args.output, safe_serialization=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
