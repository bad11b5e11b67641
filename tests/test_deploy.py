"""Where the app runs: on ZeroGPU, which GPU size and how many seconds each model and request asks for, and what is
refused before it starts; checked with a stand-in for `spaces` that records what the GPU function was decorated
and called with, and a fake ZeroGPU flag."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import diffusers
import gradio as gr
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

import stg
from stg import families, inputs, presets
from stg.footprint import Footprint, measure
from webapp import gpu


class SpacesStandIn:
    """`spaces.GPU` as the app uses it: records each decoration (size, duration) and each call (the size, the
    duration the callable gave for its arguments), then runs the function here as ZeroGPU's worker would."""

    def __init__(self):
        self.decorated, self.calls = [], []

    def GPU(self, task=None, *, duration=None, size=None):
        def decorate(function):
            self.decorated.append({"size": size, "duration": duration})

            def called(*args, **kwargs):
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                self.calls.append({"size": size, "duration": seconds, "args": args})
                return function(*args, **kwargs)

            return called

        return decorate


@pytest.fixture
def zero_gpu(monkeypatch):
    stand_in = SpacesStandIn()
    monkeypatch.setattr(gpu, "gpu", stand_in.GPU)
    monkeypatch.setattr(gpu, "ON_ZERO_GPU", True)
    monkeypatch.setattr(gpu, "RUNNERS", {})
    return stand_in


@pytest.fixture(scope="module")
def tiny_backend():
    return stg.Backend.load("tiny")


def _meta_transformer(class_name: str):
    """A transformer with the published model's configuration (diffusers' defaults), on the meta device: its real
    parameter count, no weights."""
    with torch.device("meta"):
        return getattr(diffusers, class_name)()


def _footprint(class_name: str, other_params: float, spatial: int, temporal: int, experts: int = 1) -> Footprint:
    """A bf16 model: `experts` transformers of this class, and other_params parameters besides (text encoders,
    autoencoders; from the model pages)."""
    transformer = _meta_transformer(class_name)
    params = sum(p.numel() for p in transformer.parameters())
    config = transformer.config
    return Footprint(weight_bytes=int(2 * (experts * params + other_params)), transformer_params=params,
                     width=config.num_attention_heads * config.attention_head_dim, depth=config.num_layers,
                     spatial=spatial, temporal=temporal, activation_bytes=2)


def _request(backend, **sizes):
    return inputs.task(backend, inputs.COMMANDS["compare"], {"prompt": "a red fox", **sizes}).request


def test_tiny_model_runs_on_half_a_card_for_its_estimated_seconds(zero_gpu, tiny_backend, capsys):
    gpu.register(tiny_backend)
    assert "ZeroGPU size large for tiny" in capsys.readouterr().out
    assert [d["size"] for d in zero_gpu.decorated] == ["large"]  # at start, before any request
    request = _request(tiny_backend)
    videos = gpu.submit(tiny_backend, request)
    assert len(videos) == 2 and videos[0].frames.shape == (17, 64, 96, 3)
    assert [d["size"] for d in zero_gpu.decorated] == ["large"]
    (call,) = zero_gpu.calls
    assert call["size"] == "large" and call["args"][0].request == request
    # By hand: 17 frames of 96x64 through LTX's 32x / 8x autoencoder are 3 x 2 x 3 = 18 tokens; the comparison runs
    # CFG (2 passes) and CFG + STG-A at block 2 of 4 (2 passes and half a pass) in each of 8 steps.
    transformer = tiny_backend.pipe.transformer
    params = sum(p.numel() for p in transformer.parameters())
    width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    flops = (2 * params * 18 + 4 * 4 * width * 18 ** 2) * 4.5 * 8
    seconds = 20 + flops / (503.8e12 * 0.5 * 0.3)
    assert call["duration"] == math.ceil(seconds)
    # The next request reuses the decorated function.
    gpu.submit(tiny_backend, request)
    assert len(zero_gpu.decorated) == 1 and len(zero_gpu.calls) == 2


@pytest.mark.parametrize("model", ["tiny-i2v", "tiny-svd", "tiny-open-sora"])
def test_every_kind_of_model_gets_its_size_at_start(zero_gpu, model):
    """From an image, from an image alone (no prompt), from text with factorized attention."""
    backend = stg.Backend.load(model)
    gpu.register(backend)
    assert gpu.SIZES[id(backend)] == "large" and [d["size"] for d in zero_gpu.decorated] == ["large"]


def test_measure_counts_every_weight_and_the_token_grid(tiny_backend):
    footprint = measure(tiny_backend.pipe, tiny_backend.pipe.transformer, tiny_backend.depth)
    pipe = tiny_backend.pipe
    modules = [pipe.transformer, pipe.vae, pipe.text_encoder]
    assert footprint.weight_bytes == sum(4 * (sum(p.numel() for p in m.parameters()) +
                                              sum(b.numel() for b in m.buffers())) for m in modules)
    assert (footprint.spatial, footprint.temporal, footprint.activation_bytes) == (32, 8, 4)
    assert footprint.tokens(121, 512, 768) == 16 * 16 * 24


def test_size_follows_weights_and_activations():
    """LTX-Video 2B fits half a card; LTX-2 with Gemma 3 12B and Wan 2.2 A14B need the whole card; a model over
    96 GB is refused naming --fp8. Parameters: the transformers' published configurations, the text encoders'
    and autoencoders' counts from the model pages (as in the README's model table)."""
    ltx_video = _footprint("LTXVideoTransformer3DModel", 4.8e9 + 0.4e9, 32, 8)
    ltx2 = _footprint("LTX2VideoTransformer3DModel", 12.2e9 + 0.4e9 + 0.1e9, 32, 8)
    wan22 = _footprint("WanTransformer3DModel", 5.7e9 + 0.1e9, 16, 4, experts=2)
    request = stg.backend.Request("a", "", None, 0, 40, 121, 512, 768)
    assert gpu.gpu_size(ltx_video, request, "ltx-video") == "large"
    assert gpu.gpu_size(ltx2, request, "ltx-2") == "xlarge"
    wan_request = stg.backend.Request("a", "", None, 0, 40, 81, 720, 1280)
    assert gpu.gpu_size(wan22, wan_request, "wan2.2-t2v-a14b") == "xlarge"
    too_big = Footprint(120 * 10 ** 9, 60 * 10 ** 9, 8192, 60, 32, 8, 2)
    with pytest.raises(ValueError, match="--fp8"):
        gpu.gpu_size(too_big, request, "big")


def test_a_model_that_fits_no_size_ends_the_app_at_start(zero_gpu, tiny_backend, monkeypatch):
    monkeypatch.setattr(gpu, "GPU_BYTES", {"large": 1000, "xlarge": 2000})
    monkeypatch.setattr(gpu, "RESERVE_BYTES", 0)
    with pytest.raises(SystemExit, match=r"STG Studio: model: tiny needs .*--fp8"):
        gpu.register(tiny_backend)
    assert zero_gpu.decorated == []


@pytest.fixture(scope="module")
def ltx_video_2b(tiny_backend):
    """LTX-Video 2B's real transformer (its published configuration, on the meta device: it cannot run) in the tiny
    pipeline, with LTX-Video's preset: what the GPU runner sees of the default model."""
    pipe = diffusers.LTXPipeline(**{**tiny_backend.pipe.components,
                                    "transformer": _meta_transformer("LTXVideoTransformer3DModel")})
    return stg.Backend(pipe, families.for_pipeline("LTXPipeline"), presets.get("ltx-video"), "ltx-video")


def test_official_comparison_fits_and_a_longer_request_is_refused_before_it_starts(zero_gpu, ltx_video_2b):
    gpu.register(ltx_video_2b)
    assert gpu.SIZES[id(ltx_video_2b)] == "large"
    official = _request(ltx_video_2b)
    assert (official.steps, official.num_frames, official.height, official.width) == (40, 121, 512, 768)
    job = gpu.GpuJob(id(ltx_video_2b), "token", official)
    assert gpu.job_seconds(job) <= gpu.MAX_GPU_SECONDS
    assert gpu.duration(job) == math.ceil(gpu.job_seconds(job))
    longest = _request(ltx_video_2b, num_frames=257, height=1024, width=1280, steps=100)
    with pytest.raises(gr.Error, match=r"at most \d+ frames fit at 1280x1024 and 100 steps|lower the steps"):
        gpu.submit(ltx_video_2b, longest)  # refused before the meta-device transformer is ever called
    assert zero_gpu.calls == []


def test_every_hub_id_names_where_it_was_confirmed():
    """Each preset's hub id has its record (`id_source`) beside it, which starts with that very id: an id changed
    without its record fails here."""
    checked = []
    for path in sorted(presets.PRESET_DIR.glob("*.json")):
        for key, model in json.loads(path.read_text())["models"].items():
            if "source" not in model:
                continue  # built here (tiny) or a folder of this repository
            record = model.get("id_source", "")
            assert re.match(re.escape(model["source"]) + r"[: ]", record.removeprefix("huggingface.co/")), \
                f"{path.name}: {key}: its id {model['source']!r} is not the one its id_source names: {record!r}"
            checked.append(model["source"])
    assert "diffusers/LTX-2.3-Diffusers" in checked and "Lightricks/LTX-2.3" not in checked
    table = presets.hub_id_table()
    assert all(f"| `{source}` |" in table for source in checked)  # the README's list, written from the presets
    assert "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_t2v" in checked


def test_every_preset_file_names_each_key_once():
    """JSON keeps the last of two equal keys without a word: a preset written twice would lose one silently."""
    def unique(pairs):
        keys = [key for key, _ in pairs]
        assert len(set(keys)) == len(keys), f"{path.name}: {sorted({k for k in keys if keys.count(k) > 1})} twice"
        return dict(pairs)

    for path in sorted(presets.PRESET_DIR.glob("*.json")):
        json.loads(path.read_text(), object_pairs_hook=unique)


def _counted(module, *args, **kwargs) -> float:
    with FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    return float(counter.get_total_flops())


def test_a_unets_flops_are_counted_as_a_real_forward_counts_them():
    """SVD's UNet works at four resolutions, so its FLOPs are counted on fake tensors: the count equals what torch
    counts in a real forward of the tiny SVD's UNet (same shapes, real numbers)."""
    backend = stg.Backend.load("tiny-svd")
    unet, d = backend.pipe.unet, backend.preset.defaults
    footprint = measure(backend.pipe, unet, backend.depth, factorized=True)
    assert footprint.unet is not None
    config = unet.config
    latents = torch.zeros(1, d["num_frames"], config.in_channels, d["height"] // 8, d["width"] // 8)
    with torch.no_grad():
        real = _counted(unet, latents, torch.ones(1), torch.zeros(1, 1, config.cross_attention_dim), torch.zeros(1, 3))
    assert footprint.pass_flops(d["num_frames"], d["height"], d["width"]) == real > 0


def test_svd_official_comparisons_fit_half_a_card():
    """SVD's real UNet (diffusers' defaults are its configuration: 1.52B parameters), on the meta device, in the tiny
    pipeline: its counted FLOPs (36 TFLOP a pass at 14 frames of 1024x576) give both presets' official comparisons
    time on half a card. The transformer formula (every parameter applied to every first-level token) would give
    over ten times as much and refuse them."""
    tiny = stg.Backend.load("tiny-svd")
    with torch.device("meta"):
        unet = diffusers.UNetSpatioTemporalConditionModel()
    pipe = diffusers.StableVideoDiffusionPipeline(**{**tiny.pipe.components, "unet": unet})
    for key in ("svd", "svd-xt"):
        backend = stg.Backend(pipe, families.for_pipeline("StableVideoDiffusionPipeline"), presets.get(key), key)
        footprint = measure(pipe, unet, backend.depth, factorized=True)
        official = gpu.default_comparison(backend)
        counted = footprint.pass_flops(official.num_frames, official.height, official.width)
        formula = dataclasses.replace(footprint, unet=None).pass_flops(official.num_frames, official.height,
                                                                       official.width)
        assert 30e12 < counted / official.num_frames * 14 < 40e12 and formula > 10 * counted
        assert gpu.gpu_size(footprint, official, key) == "large"
        assert gpu.gpu_seconds(footprint, official, backend.passes_per_step(official), "large") <= gpu.MAX_GPU_SECONDS


def test_factorized_attention_counts_pairs_within_frames_and_along_time():
    """Open-Sora 1.2's transformer (its converted configuration, 1.21B parameters) on fake tensors at 480p: the
    formula with factorized attention is above torch's count of a real forward, and within 30% of it."""
    from stg.opensora import OpenSoraTransformer3DModel, convert

    with FakeTensorMode():
        transformer = OpenSoraTransformer3DModel(**convert.transformer_config({}))
        params = sum(p.numel() for p in transformer.parameters())
        counted = _counted(transformer, torch.zeros(1, 4, 15, 60, 106), torch.ones(1), torch.zeros(1, 300, 4096),
                           height=480.0, width=848.0)
    footprint = Footprint(0, params, 1152, 28, 16, 4, 2, factorized=True)
    formula = footprint.pass_flops(57, 480, 848)  # 15 latent frames of 30 x 53 tokens
    assert counted < formula < 1.3 * counted
    assert dataclasses.replace(footprint, factorized=False).pass_flops(57, 480, 848) > 1.6 * formula
