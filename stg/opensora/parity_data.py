"""Make tests/data/opensora/: what the original Open-Sora 1.2 code computes on tiny random models.

The port in this package is proven against these files (tests/test_opensora.py), so that neither the tests nor CI
need the original code. What this script runs:

- The original code of hpcaitech/Open-Sora at tag v1.2.0 (commit 17cce908, Apache-2.0), from a snapshot extracted
  outside this repository (``git archive 17cce908 opensora | tar x``), given as ``--original``. Its modules are
  imported one by one (``opensora/models/stdit/stdit3.py``, ``opensora/models/layers/blocks.py``,
  ``opensora/models/vae/vae.py`` and ``vae_temporal.py``, ``opensora/schedulers/rf/``); the package ``__init__``
  files, which import every other model, are skipped.
- Its own pinned helpers (requirements/requirements.txt): ``timm==0.9.16``, ``rotary_embedding_torch==0.5.3``
  (with ``beartype``) and ``einops``, on ``sys.path``; diffusers' ``AutoencoderKL`` from this environment.
- Light stand-ins, installed here, for what needs a GPU or a cluster: ``xformers.ops.memory_efficient_attention``
  with ``BlockDiagonalMask.from_seqlens`` as a dense block-diagonal softmax attention; ``mmengine.registry.Registry``
  as a name -> builder table; ``colossalai`` and ``torchvision`` as empty names (only imported, never called on
  these paths: checkpoint I/O and timm's image transforms).

On tiny configs, with every parameter and buffer re-randomized after construction (the original's initializer
zeroes the temporal blocks' output layers and the fps embedder's last layer, which would hide temporal bugs), in
float32 on the CPU, it saves:

- ``transformer.safetensors``: STDiT3's state dict in the hub checkpoint's key names, and ``transformer_io``: a
  forward pass with two rows of unequal text masks, odd latent sizes (3 x 5 x 7, padded to the 2x2 patch) and
  different timesteps; the rotary frequency table (``rope.freqs``, fixed, not learned) keeps its values.
- ``vae.safetensors``: the temporal VAE's and the tiny SDXL-style ``AutoencoderKL``'s state dicts, and ``vae_io``:
  ``VideoAutoencoderPipeline.encode`` (posterior means: ``sample()`` of both posteriors replaced by ``mode()``) and
  ``decode`` at 17 and 51 frames (micro-frames of 17).
- ``sample_io``: a whole ``RFLOW.sample`` (3 steps, timestep transform on, CFG 7.0) of two prompts with a fixed fake
  text encoding of unequal masks; the null rows are the transformer's ``y_embedding``.

Run from the repository root, with the helpers on the path::

    python -m stg.opensora.parity_data --original /tmp/os12 --helpers /tmp/osdeps
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import json
import pathlib
import sys
import tempfile
import types

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "opensora"

TRANSFORMER = dict(
    depth=2, hidden_size=32, num_heads=2, patch_size=(1, 2, 2), in_channels=4, caption_channels=16,
    model_max_length=8, qk_norm=True, input_sq_size=512,
)
TEMPORAL_VAE = dict(
    in_out_channels=4, latent_embed_dim=4, embed_dim=4, filters=4, num_res_blocks=1,
    channel_multipliers=(1, 2, 2, 4), temporal_downsample=(False, True, True), num_groups=2,
)
SPATIAL_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
    block_out_channels=(8, 8, 8, 8),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
SHIFT = (-0.10, 0.34, 0.27, 0.98)  # OpenSoraVAE_V1_2's fixed normalisation (opensora/models/vae/vae.py)
SCALE = (3.85, 2.32, 2.33, 3.06)


# ---------------------------------------------------------------- stand-ins


def _dense_memory_efficient_attention(q, k, v, p=0.0, attn_bias=None):
    """xformers' attention on [1, M, heads, dim] tensors, dense; attn_bias is a `_BlockDiagonalMask` or None."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    if attn_bias is not None:
        scores = scores.masked_fill(~attn_bias.dense(q.shape[1], k.shape[1]), float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).contiguous()  # xformers returns it contiguous


class _BlockDiagonalMask:
    def __init__(self, q_lens, kv_lens):
        self.q_lens, self.kv_lens = list(q_lens), list(kv_lens)

    @classmethod
    def from_seqlens(cls, q_seqlen, kv_seqlen=None):
        return cls(q_seqlen, kv_seqlen if kv_seqlen is not None else q_seqlen)

    def dense(self, n_q, n_kv):
        allowed = torch.zeros(n_q, n_kv, dtype=torch.bool)
        q0 = k0 = 0
        for nq, nk in zip(self.q_lens, self.kv_lens):
            allowed[q0 : q0 + nq, k0 : k0 + nk] = True
            q0, k0 = q0 + nq, k0 + nk
        return allowed


class _Registry:
    """mmengine's Registry, as far as the original uses it: register by name, build from a dict with "type"."""

    def __init__(self, name, locations=None, **_):
        self.name, self.table = name, {}

    def register_module(self, name=None, force=False, module=None):
        def register(obj):
            self.table[name or obj.__name__] = obj
            return obj

        return register

    def build(self, cfg):
        cfg = dict(cfg)
        return self.table[cfg.pop("type")](**cfg)


class _Names(types.ModuleType):
    """A module whose every attribute is a placeholder class: for names that are imported and never used."""

    __path__: list = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: None})


class _NamesFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = roots

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Names(spec.name)

    def exec_module(self, module):
        pass


def _names_with_members(root: str, members: dict[str, dict]):
    """Modules `root.sub` with named members (a placeholder module tree would give classes for enums too)."""
    for sub, attrs in members.items():
        module = types.ModuleType(f"{root}.{sub}" if sub else root)
        module.__dict__.update(attrs)
        sys.modules[module.__name__] = module


def install_stand_ins():
    # transformers and diffusers probe for torchvision: import what the original uses before the placeholder exists.
    from diffusers.models import AutoencoderKL, AutoencoderKLTemporalDecoder  # noqa: F401
    from transformers import PretrainedConfig, PreTrainedModel  # noqa: F401

    xformers = types.ModuleType("xformers")
    ops = types.ModuleType("xformers.ops")
    ops.memory_efficient_attention = _dense_memory_efficient_attention
    ops.fmha = types.SimpleNamespace(BlockDiagonalMask=_BlockDiagonalMask)
    xformers.ops = ops
    sys.modules.update({"xformers": xformers, "xformers.ops": ops})
    _names_with_members("mmengine", {"": {}, "registry": {"Registry": _Registry}})
    sys.meta_path.insert(0, _NamesFinder({"colossalai"}))
    _install_torchvision_placeholder()


def _install_torchvision_placeholder():
    """timm 0.9.16 imports torchvision's transforms at import time and builds tables keyed by its enum members."""
    from enum import Enum

    mode = Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC BOX HAMMING LANCZOS")
    finder = _NamesFinder({"torchvision"})
    sys.meta_path.insert(0, finder)
    import torchvision.transforms  # noqa: F401  (made by the finder)

    sys.modules["torchvision.transforms"].InterpolationMode = mode
    sys.modules["torchvision.transforms.functional"] = _Names("torchvision.transforms.functional")
    sys.modules["torchvision.transforms.functional"].InterpolationMode = mode


def _bare_package(name: str, folder: pathlib.Path):
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    sys.modules[name] = module


def _load_package(name: str, file: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, file, submodule_search_locations=[str(file.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_original(root: pathlib.Path) -> types.SimpleNamespace:
    """The original modules this script runs, without their package __init__ files (which import every model)."""
    pkg = root / "opensora"
    for name in ["opensora", "opensora.models", "opensora.models.stdit", "opensora.models.vae", "opensora.schedulers",
                 "opensora.schedulers.iddpm", "opensora.utils", "opensora.acceleration"]:
        _bare_package(name, pkg.joinpath(*name.split(".")[1:]))
    stdit3 = importlib.import_module("opensora.models.stdit.stdit3")
    vae = importlib.import_module("opensora.models.vae.vae")
    vae_temporal = importlib.import_module("opensora.models.vae.vae_temporal")
    rf = _load_package("opensora.schedulers.rf", pkg / "schedulers" / "rf" / "__init__.py")
    return types.SimpleNamespace(stdit3=stdit3, vae=vae, vae_temporal=vae_temporal, rf=rf)


# ---------------------------------------------------------------- runs


def rerandomize(module: torch.nn.Module, seed: int, keep: tuple[str, ...] = ()):
    """Every floating tensor of the state dict (parameters and saved buffers) drawn afresh, except `keep`.

    Norm weights around 1, matrices and kernels with std 1/sqrt(fan-in) (activations stay near unit size), the rest
    (biases, tables, embeddings) with std 0.2.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():  # not the unsaved, computed buffers
            if name in keep or not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            owner = name.rsplit(".", 2)[-2] if name.count(".") else ""
            if "norm" in owner and name.endswith(".weight"):
                tensor.copy_(1 + 0.2 * noise)
            elif tensor.ndim >= 2:
                tensor.copy_(noise / tensor[0].numel() ** 0.5)
            else:
                tensor.copy_(0.2 * noise)


def transformer_run(original, out: dict) -> torch.nn.Module:
    config = original.stdit3.STDiT3Config(**TRANSFORMER)
    model = original.stdit3.STDiT3(config).eval()
    rerandomize(model, 1, keep=("rope.freqs",))
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 3, 5, 7, generator=generator)
    y = torch.randn(2, 1, TRANSFORMER["model_max_length"], TRANSFORMER["caption_channels"], generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]])
    timestep = torch.tensor([873.5, 211.25])
    fps = torch.tensor([24.0, 24.0])
    height, width = torch.tensor([40.0, 40.0]), torch.tensor([56.0, 56.0])
    with torch.no_grad():
        output = model(x, timestep, y, mask=mask, fps=fps, height=height, width=width)
    out.update(transformer_x=x, transformer_y=y, transformer_mask=mask, transformer_timestep=timestep,
               transformer_fps=fps, transformer_height=height, transformer_width=width, transformer_output=output)
    return model


def vae_run(original, folder: pathlib.Path, out: dict) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(**SPATIAL_VAE).save_pretrained(folder / "vae")
    config = original.vae.VideoAutoencoderPipelineConfig(
        vae_2d=dict(type="VideoAutoencoderKL", from_pretrained=str(folder), subfolder="vae", micro_batch_size=4),
        vae_temporal=dict(type="VAE_Temporal", **TEMPORAL_VAE),
        micro_frame_size=17, shift=SHIFT, scale=SCALE,
    )
    vae = original.vae.VideoAutoencoderPipeline(config).eval()
    rerandomize(vae, 3, keep=("shift", "scale"))
    # Posterior means, so that the data holds no draw of the original's unseeded global generator.
    original.vae_temporal.DiagonalGaussianDistribution.sample = original.vae_temporal.DiagonalGaussianDistribution.mode
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution as Spatial

    spatial_sample = Spatial.sample
    Spatial.sample = lambda self, generator=None: self.mode()
    generator = torch.Generator().manual_seed(4)
    try:
        with torch.no_grad():
            for frames in (17, 51):
                video = torch.rand(1, 3, frames, 16, 8, generator=generator) * 2 - 1
                latents = torch.randn(1, 4, frames // 17 * 5, 2, 1, generator=generator)
                out[f"vae_video_{frames}"] = video
                out[f"vae_encoded_{frames}"] = vae.encode(video)
                out[f"vae_latents_{frames}"] = latents
                out[f"vae_decoded_{frames}"] = vae.decode(latents, num_frames=frames)
    finally:
        Spatial.sample = spatial_sample
    return vae


def sample_run(original, transformer, out: dict):
    """RFLOW.sample as scripts/inference.py calls it, with a fixed text encoding in place of T5."""
    generator = torch.Generator().manual_seed(5)
    length, channels = TRANSFORMER["model_max_length"], TRANSFORMER["caption_channels"]
    y = torch.randn(2, 1, length, channels, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0]])

    class FixedTextEncoder:
        def encode(self, prompts):
            return dict(y=y, mask=mask)

        def null(self, n):
            return transformer.y_embedder.y_embedding[None].repeat(n, 1, 1)[:, None]

    z = torch.randn(2, 4, 5, 4, 6, generator=generator)
    # prepare_multi_resolution_info("STDiT2", ...) for 17 frames of 32 x 48 pixels at 24 fps
    args = dict(height=torch.tensor([32.0] * 2), width=torch.tensor([48.0] * 2), num_frames=torch.tensor([17.0] * 2),
                ar=torch.tensor([32 / 48] * 2), fps=torch.tensor([24.0] * 2))
    scheduler = original.rf.RFLOW(use_timestep_transform=True, num_sampling_steps=3, cfg_scale=7.0)
    with torch.no_grad():
        sample = scheduler.sample(transformer, FixedTextEncoder(), z=z.clone(), prompts=["a", "b"], device="cpu",
                                  additional_args=args, progress=False)
    out.update(sample_y=y, sample_mask=mask, sample_noise=z, sample_output=sample)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original", required=True, type=pathlib.Path, help="extracted Open-Sora v1.2.0 tree")
    parser.add_argument("--helpers", type=pathlib.Path, help="folder with timm, rotary_embedding_torch, einops")
    args = parser.parse_args(argv)
    if args.helpers:
        sys.path.insert(0, str(args.helpers))
    install_stand_ins()
    original = import_original(args.original)
    torch.set_grad_enabled(False)
    OUT.mkdir(parents=True, exist_ok=True)
    io: dict[str, torch.Tensor] = {}
    transformer = transformer_run(original, io)
    with tempfile.TemporaryDirectory() as folder:
        vae = vae_run(original, pathlib.Path(folder), io)
    sample_run(original, transformer, io)
    save_file({k: v.contiguous() for k, v in transformer.state_dict().items()}, OUT / "transformer.safetensors")
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, OUT / "vae.safetensors")
    save_file({k: v.contiguous() for k, v in io.items()}, OUT / "io.safetensors")
    (OUT / "configs.json").write_text(json.dumps(
        dict(transformer=TRANSFORMER, temporal_vae=TEMPORAL_VAE, spatial_vae=SPATIAL_VAE, shift=SHIFT, scale=SCALE,
             sample=dict(steps=3, guidance_scale=7.0, height=32, width=48, num_frames=17, fps=24)),
        indent=1) + "\n")
    for file in sorted(OUT.glob("*")):
        print(f"{file.name}: {file.stat().st_size} bytes")


if __name__ == "__main__":
    main()
