"""Stable Video Diffusion: a UNet with factorized attention, guided with a spatial and a temporal perturbed pass,
against stock StableVideoDiffusionPipeline and a plain reference of the official formula (CPU, fp32)."""

from __future__ import annotations

from contextlib import contextmanager

import diffusers
import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from factorized import every_pass_mode_and_rescale, guided
from faults import fail_then_cancel
from tiny_cases import BY_ID, folders, loaded, request  # noqa: F401

import stg
from stg import families, tiny
from stg.denoiser import COND, TEMPORAL, UNCOND, Row, plan_rows

RTOL = 1e-5
# 128 px: 16x16 latents, 2x2 at the UNet's deepest level. Its GroupNorms (32 groups of the tiny UNet's 32 channels)
# normalise over the pixels of one channel there: at 1x2 they turn float rounding of differently batched passes into
# 1e-4 of the result; at 2x2 it stays near 4e-6, within RTOL.
SIZE = dict(num_frames=4, height=128, width=128)
STEPS = 3
SEED = 5
CONDITIONING = dict(motion_bucket_id=60, noise_aug_strength=0.1)  # the model's own settings, not at their defaults
RECIPE = dict(min_guidance_scale=1.0, **CONDITIONING)  # w from 1 on the first frame to the panel's w on the last


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """At this size stock SVD differs from itself by 1.1e-5 relative between one and two CPU threads (fp32 sums in
    another order), more than the tolerance: every comparison here runs on one thread, where it is repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def svd(tmp_path_factory):
    folder = tiny.build("svd", tmp_path_factory.mktemp("svd"))
    backend = stg.Backend.load(str(folder))
    stock = diffusers.StableVideoDiffusionPipeline.from_pretrained(folder)
    for pipe in (backend.pipe, stock):
        pipe.set_progress_bar_config(disable=True)
    return backend, stock


def image():
    return tiny.stock_image(SIZE["height"], SIZE["width"])


def options(**extra) -> dict:
    return {"image": image(), "seed": SEED, "steps": STEPS, **SIZE, **extra}


def our_latents(backend, guidances, **speed) -> torch.Tensor:
    pipe, kwargs, _ = backend.prepare(None, guidances, **options(), **speed)
    return pipe(**{**kwargs, "output_type": "latent"}).frames


def stock_latents(pipe, min_w: float, max_w: float, **kwargs) -> torch.Tensor:
    return pipe(image(), **SIZE, num_inference_steps=STEPS, min_guidance_scale=min_w, max_guidance_scale=max_w,
                fps=7, **CONDITIONING, generator=torch.Generator("cpu").manual_seed(SEED), output_type="latent",
                **kwargs).frames


def assert_relatively_close(ours: torch.Tensor, reference: torch.Tensor):
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max() <= RTOL * reference.abs().max()


# 1. the layers -------------------------------------------------------------------------------------------------
def test_layers_are_numbered_as_the_unet_runs_them(svd):
    """16 spatial and 16 temporal layers: 6 down, 1 mid, 9 up; the first up-block layer, the official u0, is 7."""
    backend, _ = svd
    unet = backend.pipe.unet
    names = {id(m): n for n, m in unet.named_modules()}
    family = families.FAMILIES["svd"]
    spatial = [names[id(b)] for b in family.blocks.blocks(unet)]
    temporal = [names[id(b)] for b in family.temporal.blocks(unet)]
    assert backend.depth == backend.temporal_depth == len(spatial) == len(temporal) == 16
    assert [n.split(".")[0] for n in spatial] == ["down_blocks"] * 6 + ["mid_block"] + ["up_blocks"] * 9
    assert spatial[7] == "up_blocks.1.attentions.0.transformer_blocks.0"
    assert temporal[7] == "up_blocks.1.attentions.0.temporal_transformer_blocks.0"
    order = []  # the order the UNet calls them in
    handles = [unet.get_submodule(n).register_forward_pre_hook(lambda *_, n=n: order.append(n)) for n in spatial]
    try:
        backend.generate(None, stg.Guidance(1.0), **options(steps=2))
    finally:
        for handle in handles:
            handle.remove()
    assert order == spatial * 2


# 2. CFG is stock CFG -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("min_w,max_w", [(1.0, 3.0), (2.5, 2.5), (1.0, 1.0)], ids=["per-frame", "constant", "off"])
def test_cfg_equals_stock(svd, min_w, max_w):
    backend, stock = svd
    guidance = stg.Guidance(max_w, min_guidance_scale=min_w, **CONDITIONING)
    assert_relatively_close(our_latents(backend, [guidance]), stock_latents(stock, min_w, max_w))
    video = backend.generate(None, guidance, **options())
    frames = stock(image(), **SIZE, num_inference_steps=STEPS, min_guidance_scale=min_w, max_guidance_scale=max_w,
                   **CONDITIONING, generator=torch.Generator("cpu").manual_seed(SEED), output_type="np").frames[0]
    assert np.abs(video.frames / 255 - frames).max() <= 1 / 255 + 1e-6 and video.frames.std() > 0


def test_decode_chunk_size_is_the_pipelines(svd):
    backend, stock = svd
    guidance = stg.Guidance(3.0, decode_chunk_size=1, **RECIPE)
    video = backend.generate(None, guidance, **options())
    frames = stock(image(), **SIZE, num_inference_steps=STEPS, decode_chunk_size=1, **CONDITIONING,
                   generator=torch.Generator("cpu").manual_seed(SEED), output_type="np").frames[0]
    assert np.abs(video.frames / 255 - frames).max() <= 1 / 255 + 1e-6


# 3. STG equals the official formula, pass by pass --------------------------------------------------------------
class Perturbing(AttnProcessor2_0):
    """stg-a on one quarter of the batch (the official batch of four): those rows' tokens get their own value vector."""

    def __init__(self, quarter: int):
        super().__init__()
        self.quarter = quarter

    def __call__(self, attn, hidden_states, *args, **kwargs):
        output = super().__call__(attn, hidden_states, *args, **kwargs)
        rows = hidden_states.shape[0] // 4
        part = slice(self.quarter * rows, (self.quarter + 1) * rows)
        output[part] = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states[part])))
        return output


@contextmanager
def perturbed_quarters(unet, mode: str, chosen: dict[int, list[torch.nn.Module]]):
    """The chosen blocks perturbed in one quarter of the batch each ({quarter: blocks}): stg-a by attention processor,
    stg-r by a forward that gives those rows their input back."""
    undo = []
    for quarter, blocks in chosen.items():
        for block in blocks:
            if mode == "stg-a":
                attention = block.attn1
                undo.append((attention, attention.processor))
                attention.set_processor(Perturbing(quarter))
            else:
                def forward(hidden_states, *args, _original=block.forward, _quarter=quarter, **kwargs):
                    output = _original(hidden_states, *args, **kwargs).clone()
                    rows = hidden_states.shape[0] // 4
                    part = slice(_quarter * rows, (_quarter + 1) * rows)
                    output[part] = hidden_states[part]
                    return output
                block.forward = forward
                undo.append((block, None))
    try:
        yield
    finally:
        for module, processor in undo:
            if processor is None:
                del module.forward
            else:
                module.set_processor(processor)


class OfficialUNet:
    """The official STG step on SVD: one forward of [uncond, cond, spatial-perturbed, temporal-perturbed] (uncond:
    zero image embeddings and zero image latents), then eps_u + w (eps_c - eps_u) + s (eps_c - eps_sp) + s_t (eps_c -
    eps_t), w per frame, rescaled toward std(eps_c). Plugged into the stock pipeline with its own CFG off."""

    def __init__(self, unet, guidance: stg.Guidance):
        self.unet, self.g = unet, guidance

    def __getattr__(self, name):
        return getattr(self.unet, name)

    def __call__(self, sample, timestep, encoder_hidden_states, added_time_ids, return_dict=False):
        g, family = self.g, families.FAMILIES["svd"]
        half = sample.shape[2] // 2
        uncond = torch.cat([sample[:, :, :half], torch.zeros_like(sample[:, :, half:])], dim=2)
        batch = torch.cat([uncond, sample, sample, sample])
        embeddings = torch.cat([torch.zeros_like(encoder_hidden_states)] + [encoder_hidden_states] * 3)
        chosen = {2: [family.blocks.blocks(self.unet)[k] for k in g.stg_blocks],
                  3: [family.temporal.blocks(self.unet)[k] for k in g.temporal_stg_blocks]}
        with perturbed_quarters(self.unet, g.stg_mode, chosen):
            out = self.unet(batch, timestep, encoder_hidden_states=embeddings,
                            added_time_ids=added_time_ids.repeat(4, 1), return_dict=False)[0]
        eps_u, eps_c, eps_sp, eps_t = out.chunk(4)
        w = torch.linspace(g.min_guidance_scale, g.cfg_scale, sample.shape[1]).view(1, -1, 1, 1, 1)
        return (guided(eps_u, eps_c, w, [(g.stg_scale, eps_sp), (g.temporal_stg_scale, eps_t)], g.rescale),)


def official_latents(stock, guidance: stg.Guidance) -> torch.Tensor:
    pipe = diffusers.StableVideoDiffusionPipeline(**{**stock.components, "unet": OfficialUNet(stock.unet, guidance)})
    pipe.set_progress_bar_config(disable=True)
    return stock_latents(pipe, 1.0, 1.0)


PASSES = {"spatial": dict(stg_scale=2.0, stg_blocks=[7]),
          "temporal": dict(temporal_stg_scale=1.5, temporal_stg_blocks=[7]),
          "both": dict(stg_scale=2.0, stg_blocks=[7], temporal_stg_scale=0.5, temporal_stg_blocks=[3, 15])}


@every_pass_mode_and_rescale(PASSES)
def test_stg_equals_the_official_formula(svd, passes, mode, rescale):
    backend, stock = svd
    guidance = stg.Guidance(3.0, stg_mode=mode, rescale=rescale, **PASSES[passes], **RECIPE)
    ours = our_latents(backend, [guidance])
    assert_relatively_close(ours, official_latents(stock, guidance))
    cfg = our_latents(backend, [stg.Guidance(3.0, rescale=rescale, **RECIPE)])
    assert (ours - cfg).abs().max() > 100 * RTOL * cfg.abs().max(), "STG had no effect"


# 4. speed-ups: one forward a step for every row, split when asked ----------------------------------------------
def test_a_comparison_is_one_forward_a_step_and_splitting_it_changes_nothing(svd):
    backend, _ = svd
    panels = [stg.Guidance(3.0, **RECIPE), stg.Guidance(3.0, 2.0, "stg-a", [7], 0.7, temporal_stg_scale=0.5,
                                                       temporal_stg_blocks=[7], **RECIPE)]
    rows = []
    handle = backend.pipe.unet.register_forward_pre_hook(lambda m, args, kwargs: rows.append(kwargs["sample"].shape[0]),
                                                         with_kwargs=True)
    try:
        batched = our_latents(backend, panels)
    finally:
        handle.remove()
    assert rows == [6] * STEPS  # CFG: uncond, cond; CFG + STG: uncond, cond, spatial, temporal
    assert_relatively_close(batched, our_latents(backend, panels, max_rows=1))
    alone = [our_latents(backend, [g], max_rows=1) for g in panels]
    assert_relatively_close(batched, torch.cat(alone))


@pytest.mark.parametrize("passes", [dict(stg_blocks=[7], temporal_stg_blocks=[7]), dict(stg_blocks=[0], temporal_stg_blocks=[15]),
                                    dict(stg_blocks=[15], temporal_stg_blocks=[2, 9])], ids=["u0", "first-last", "late"])
@pytest.mark.parametrize("mode", ["stg-a", "stg-r"])
def test_perturbed_rows_share_the_stages_before_their_first_layer_exactly(svd, passes, mode):
    """The UNet's down, mid and up blocks that hold none of a row's perturbed layers, nor come after one, run once for
    the conditional row and its perturbed twins; the result is the plain computation's."""
    backend, _ = svd
    panels = [stg.Guidance(3.0, **RECIPE), stg.Guidance(3.0, 2.0, mode, rescale=0.7, temporal_stg_scale=0.5, **passes,
                                                       **RECIPE)]
    unet, frames = backend.pipe.unet, SIZE["num_frames"]
    stages = [unet.down_blocks[0], unet.mid_block, unet.up_blocks[0], unet.up_blocks[3]]
    rows = {id(stage): [] for stage in stages}  # the rows its first convolution runs on
    handles = [stage.resnets[0].register_forward_pre_hook(
        lambda m, args, kwargs, stage=stage: rows[id(stage)].append((args or [*kwargs.values()])[0].shape[0] // frames),
        with_kwargs=True) for stage in stages]
    try:
        shared = our_latents(backend, panels)
    finally:
        for handle in handles:
            handle.remove()
    first = min(passes["stg_blocks"] + passes["temporal_stg_blocks"])
    # Layers 0-5 lie in the down blocks, 6 in the mid block, none in up_blocks[0], 13-15 in up_blocks[3].
    ends = {id(unet.down_blocks[0]): 2, id(unet.mid_block): 7, id(unet.up_blocks[0]): 7, id(unet.up_blocks[3]): 16}
    for stage in stages:
        perturbed_rows_run = sum(min(p) < ends[id(stage)] for p in (passes["stg_blocks"], passes["temporal_stg_blocks"]))
        assert rows[id(stage)] == [4 + perturbed_rows_run] * STEPS, stage.__class__.__name__
    assert first < 7 or rows[id(unet.mid_block)] == [4] * STEPS
    assert_relatively_close(shared, our_latents(backend, panels, share_prefix=False, max_rows=1))


def test_rows_of_the_temporal_pass_follow_its_scale_and_the_window():
    both = stg.Guidance(3.0, 1.0, "stg-a", [7], temporal_stg_scale=0.5, temporal_stg_blocks=[7], window=(0.5, 1.0))
    temporal_only = stg.Guidance(1.0, temporal_stg_scale=0.5, temporal_stg_blocks=[2])
    assert plan_rows([both], 0, 4, True) == [Row(0, UNCOND), Row(0, COND)]
    assert [r.kind for r in plan_rows([both], 2, 4, True)] == [UNCOND, COND, "perturbed", TEMPORAL]
    assert plan_rows([temporal_only], 0, 4, True) == [Row(0, COND), Row(0, TEMPORAL)]
    assert stg.Guidance(3.0, temporal_stg_scale=0.5).uses_stg is False  # a scale without layers is no pass


# 5. requests -----------------------------------------------------------------------------------------------------
def model_state(unet) -> dict:
    state = {}
    for name, module in unet.named_modules():
        registry = getattr(module, "_diffusers_hook", None)
        state[name] = (tuple(registry.hooks) if registry is not None else (),
                       type(getattr(module, "processor", None)).__name__,
                       getattr(module.forward, "__func__", module.forward).__qualname__)
    for name, tensor in unet.state_dict().items():
        state["param:" + name] = tensor.numpy().tobytes()
    return state


def test_the_model_is_left_as_it_was_after_a_request_a_failed_one_and_a_cancelled_one(svd):
    backend, _ = svd
    unet = backend.pipe.unet
    cfg = stg.Guidance(3.0, **RECIPE)
    both = stg.Guidance(3.0, 2.0, "stg-r", [7], 0.7, temporal_stg_scale=0.5, temporal_stg_blocks=[7], **RECIPE)
    before_state, before = model_state(unet), backend.generate(None, cfg, **options()).frames
    backend.generate(None, both, **options())
    calls = []

    def fault(module, args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("fault injected in a temporal layer")

    fail_then_cancel(families.FAMILIES["svd"].temporal.blocks(unet)[7].register_forward_pre_hook(fault),
                     lambda: backend.generate(None, both, **options()),
                     lambda stop: backend.compare(None, cfg, both, callback=stop, **options()))
    np.testing.assert_array_equal(backend.generate(None, cfg, **options()).frames, before)
    assert model_state(unet) == before_state


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(prompt="a rocket"), "prompt is not accepted: this model makes video from an image alone"),
        (dict(negative_prompt="blurry"), "negative_prompt is not accepted"),
        (dict(image=None), "image is required"),
        (dict(guidance=stg.Guidance(3.0, temporal_stg_scale=1.0, temporal_stg_blocks=[16])),
         r"temporal_stg_blocks \[16\] out of range: this model has 16 blocks, allowed 0-15"),
        (dict(guidance=stg.Guidance(3.0, modality_scale=3.0)), "modality_scale: this model has no modality guidance"),
        (dict(cache=0.1), "cache must be 0 on svd: its spatial and temporal layers interleave"),
    ],
    ids=["prompt", "negative", "image", "temporal-depth", "modality", "cache"],
)
def test_bad_requests_are_refused_before_any_work(svd, change, message):
    backend, _ = svd
    values = {**options(), **change}
    prompt, guidance = values.pop("prompt", None), values.pop("guidance", stg.Guidance(3.0))
    steps = []
    with pytest.raises(ValueError, match=message):
        backend.generate(prompt, guidance, callback=lambda step, total: steps.append(step), **values)
    assert steps == []


def test_panels_of_a_run_share_the_conditioning(svd):
    backend, _ = svd
    with pytest.raises(ValueError, match="motion_bucket_id must be the same in every panel"):
        backend.compare(None, stg.Guidance(3.0, motion_bucket_id=10), stg.Guidance(3.0, motion_bucket_id=20),
                        **options())


@pytest.mark.parametrize(
    "extras,message",
    [
        (dict(temporal_stg_scale=0.5, temporal_stg_blocks=[1]), "temporal_stg_scale: this model's attention is not "
                                                                "factorized"),
        (dict(min_guidance_scale=1.0), "min_guidance_scale: this model has one CFG scale for all frames"),
        (dict(motion_bucket_id=127), "motion_bucket_id: this model takes no such setting"),
    ],
    ids=["temporal", "per-frame-w", "motion"],
)
def test_a_model_without_factorized_attention_refuses_the_temporal_pass(loaded, extras, message):
    case = BY_ID["ltx:LTXPipeline"]
    backend, _ = loaded(case)
    with pytest.raises(ValueError, match=message):
        backend.generate("a fox", stg.Guidance(3.0, **extras), **request(case))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: stg.Guidance(3.0, motion_bucket_id=256), r"motion_bucket_id must be a whole number in \[0, 255\]"),
        (lambda: stg.Guidance(3.0, motion_bucket_id=1.5), "motion_bucket_id must be a whole number"),
        (lambda: stg.Guidance(3.0, decode_chunk_size=0), r"decode_chunk_size must be a whole number in \[1, "),
        (lambda: stg.Guidance(3.0, noise_aug_strength=-0.1), r"noise_aug_strength must be a finite number in \[0, 1\]"),
        (lambda: stg.Guidance(3.0, min_guidance_scale=0.5), r"min_guidance_scale must be a finite number in \[1, 20\]"),
        (lambda: stg.Guidance(3.0, temporal_stg_scale=-1), r"temporal_stg_scale must be a finite number in \[0, 10\]"),
        (lambda: stg.Guidance(3.0, temporal_stg_blocks="7"), "temporal_stg_blocks must be a list of block indices"),
    ],
)
def test_bad_settings_name_the_field_and_the_range(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_settings_record_both_passes(svd):
    backend, _ = svd
    guidance = stg.Guidance(3.0, 2.0, "stg-a", [7], 0.7, temporal_stg_scale=0.5, temporal_stg_blocks=[7], **RECIPE)
    video = backend.generate(None, guidance, **options(steps=2))
    assert video.settings["family"] == "svd" and video.settings["pipeline"] == "StableVideoDiffusionPipeline"
    assert video.settings["guidance"]["temporal_stg_blocks"] == [7]
    assert video.settings["guidance"]["motion_bucket_id"] == 60 and video.fps == backend.preset.fps
    assert video.frames.shape == (SIZE["num_frames"], SIZE["height"], SIZE["width"], 3)


def test_presets_carry_the_official_recipe():
    for key, frames in (("svd", 14), ("svd-xt", 25)):
        preset = stg.presets.get(key)
        d = preset.defaults
        assert (preset.pipeline, d["num_frames"], d["height"], d["width"]) == ("StableVideoDiffusionPipeline", frames,
                                                                                576, 1024)
        assert (d["stg_mode"], d["stg_scale"], d["stg_blocks"], d["temporal_stg_scale"], d["temporal_stg_blocks"],
                d["rescale"]) == ("stg-a", 2.0, [7], 0.5, [7], 0.7)
    assert stg.presets.get("svd-xt").source == "stabilityai/stable-video-diffusion-img2vid-xt"


def test_the_tiny_preset_loads_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("STG_CACHE", str(tmp_path))
    backend = stg.Backend.load("tiny-svd")
    backend.pipe.set_progress_bar_config(disable=True)
    cfg, with_stg = (stg.Guidance(**{k: v for k, v in backend.preset.defaults.items() if k in fields})
                     for fields in (("cfg_scale", "min_guidance_scale"),
                                    ("cfg_scale", "min_guidance_scale", "stg_scale", "stg_mode", "stg_blocks",
                                     "temporal_stg_scale", "temporal_stg_blocks", "rescale")))
    left, right = backend.compare(None, cfg, with_stg, image=image(), steps=2)
    assert left.frames.shape == right.frames.shape == (4, 64, 128, 3)
    assert np.abs(left.frames.astype(int) - right.frames).max() > 0


# 6. the block explorer -------------------------------------------------------------------------------------------
def test_a_sweep_tries_spatial_temporal_or_both_layers(svd):
    backend, _ = svd
    candidate = stg.Guidance(3.0, 2.0, "stg-a", [7], temporal_stg_scale=0.5, temporal_stg_blocks=[7], **RECIPE)
    reference = stg.Guidance(3.0, **RECIPE)
    kinds = {layers: [(g.stg_blocks, g.temporal_stg_blocks, g.stg_scale, g.temporal_stg_scale)
                      for g in backend.sweep_panels(reference, candidate, [3, 12], layers)[1:]]
             for layers in ("spatial", "temporal", "both")}
    assert kinds == {"spatial": [((3,), (), 2.0, 0.0), ((12,), (), 2.0, 0.0)],
                     "temporal": [((), (3,), 0.0, 0.5), ((), (12,), 0.0, 0.5)],
                     "both": [((3,), (3,), 2.0, 0.5), ((12,), (12,), 2.0, 0.5)]}
    _, (temporal,) = backend.sweep(None, reference, candidate, [12], layers="temporal", **options())
    alone = backend.generate(None, stg.Guidance(3.0, stg_mode="stg-a", temporal_stg_scale=0.5, temporal_stg_blocks=[12],
                                                **RECIPE),
                             **options())
    assert np.abs(temporal.frames.astype(int) - alone.frames).max() <= 1
    with pytest.raises(ValueError, match="temporal_stg_scale must be above 0 for a block sweep"):
        backend.sweep_panels(reference, stg.Guidance(3.0, 2.0, "stg-a", [7]), [3], "temporal")


def test_a_model_without_factorized_attention_sweeps_its_blocks_only(loaded):
    backend, _ = loaded(BY_ID["ltx:LTXPipeline"])
    with pytest.raises(ValueError, match="sweep_layers must be one of spatial for this model, got 'temporal'"):
        backend.sweep_panels(stg.Guidance(3.0), stg.Guidance(3.0, 1.0, "stg-a", [1]), [1], "temporal")
