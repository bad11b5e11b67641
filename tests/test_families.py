"""What the newer families add, against their stock pipelines (CPU, fp32): LTX-2's own STG, modality guidance and
sound, Wan 2.2's two experts, HunyuanVideo 1.5's guider and image-sized video; and the layouts refused at load."""

from __future__ import annotations

from dataclasses import replace

import diffusers
import numpy as np
import pytest
import torch
from tiny_cases import (  # noqa: F401
    BY_ID, NEGATIVE, PROMPT, assert_same_video, folders, loaded, request, stock_call,
)

import stg
from stg import families, inputs, presets, results, video

LTX2 = BY_ID["ltx2:LTX2Pipeline"]
WAN22 = BY_ID["wan2.2:WanPipeline"]
HUNYUAN15 = BY_ID["hunyuan-video-1.5:HunyuanVideo15Pipeline"]
HUNYUAN15_I2V = BY_ID["hunyuan-video-1.5-i2v:HunyuanVideo15ImageToVideoPipeline"]


# LTX-2 -------------------------------------------------------------------------------------------------------
LIGHTRICKS = [  # Lightricks' recipe (w 3, rescale 0.7, modality 3, sound w 7) with STG, and without it
    (dict(stg_scale=1.0, stg_mode="stg-a", stg_blocks=[2]), dict(stg_scale=1.0, spatio_temporal_guidance_blocks=[2])),
    (dict(), dict(stg_scale=0.0)),
]


@pytest.mark.parametrize("ours,theirs", LIGHTRICKS, ids=["stg", "cfg"])
def test_ltx2_recipe_with_modality_and_sound_guidance_equals_stock(ours, theirs, loaded):
    backend, stock = loaded(LTX2)
    options = request(LTX2)
    guidance = stg.Guidance(3.0, rescale=0.7, modality_scale=3.0, audio_cfg_scale=7.0, **ours)
    video = backend.generate(PROMPT, guidance, negative_prompt=NEGATIVE, **options)
    reference = stock_call(LTX2, stock, options, 3.0, prompt=PROMPT, negative_prompt=NEGATIVE, guidance_rescale=0.7,
                           modality_scale=3.0, audio_guidance_scale=7.0, **theirs)
    assert_same_video(LTX2, video, reference, stock)


def test_ltx2_separate_sound_scales_equal_stock(loaded):
    backend, stock = loaded(LTX2)
    options = request(LTX2)
    guidance = stg.Guidance(3.0, 1.0, "stg-a", [1], 0.5, modality_scale=2.0, audio_cfg_scale=5.0,
                            audio_stg_scale=2.0, audio_modality_scale=4.0, audio_rescale=0.2)
    video = backend.generate(PROMPT, guidance, negative_prompt=NEGATIVE, **options)
    reference = stock_call(LTX2, stock, options, 3.0, prompt=PROMPT, negative_prompt=NEGATIVE, stg_scale=1.0,
                           spatio_temporal_guidance_blocks=[1], guidance_rescale=0.5, modality_scale=2.0,
                           audio_guidance_scale=5.0, audio_stg_scale=2.0, audio_modality_scale=4.0,
                           audio_guidance_rescale=0.2)
    assert_same_video(LTX2, video, reference, stock)


def test_ltx2_without_perturbed_attention_gets_its_own_stg_switched_on(folders):
    """A config without `perturbed_attn` makes stock LTX-2 ignore STG; the engine switches the model's processor on."""
    folder = folders("ltx2", transformer={"perturbed_attn": False})
    backend = stg.Backend.load(str(folder))
    silent = diffusers.LTX2Pipeline.from_pretrained(folder)
    able = diffusers.LTX2Pipeline.from_pretrained(folder, transformer=diffusers.LTX2VideoTransformer3DModel.from_pretrained(
        folder, subfolder="transformer", perturbed_attn=True))
    for pipe in (backend.pipe, silent, able):
        pipe.set_progress_bar_config(disable=True)
    options = request(LTX2)
    cfg, with_stg = stg.Guidance(3.0), stg.Guidance(3.0, 2.0, "stg-a", [2])
    own = dict(prompt=PROMPT, negative_prompt=NEGATIVE, stg_scale=2.0, spatio_temporal_guidance_blocks=[2])
    stock_cfg = stock_call(LTX2, silent, options, 3.0, prompt=PROMPT, negative_prompt=NEGATIVE)
    assert np.abs(stock_call(LTX2, silent, options, 3.0, **own).frames - stock_cfg.frames).max() < 1e-5  # a no-op
    assert_same_video(LTX2, backend.generate(PROMPT, cfg, negative_prompt=NEGATIVE, **options), stock_cfg, silent)
    ours = backend.generate(PROMPT, with_stg, negative_prompt=NEGATIVE, **options)
    assert_same_video(LTX2, ours, stock_call(LTX2, able, options, 3.0, **own), able)
    assert np.abs(ours.frames.astype(int) - stock_cfg.frames[0] * 255).max() > 1


def test_ltx2_comparison_is_one_forward_a_step(loaded):
    """Stock LTX-2 runs up to three forwards a step for one video; a comparison here runs one, all rows batched."""
    backend, _ = loaded(LTX2)
    recipe = dict(rescale=0.7, modality_scale=3.0, audio_cfg_scale=7.0)
    rows = []
    handle = backend.pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        backend.compare(PROMPT, stg.Guidance(3.0, **recipe), stg.Guidance(3.0, 1.0, "stg-a", [2], **recipe),
                        **request(LTX2, steps=2))
    finally:
        handle.remove()
    assert rows == [7, 7]  # CFG panel: uncond, cond, isolated; CFG + STG panel: those and the perturbed row


def test_ltx2_settings_name_the_sound(loaded):
    backend, _ = loaded(LTX2)
    video = backend.generate(PROMPT, stg.Guidance(3.0, audio_cfg_scale=7.0), **request(LTX2))
    assert video.audio.ndim == 2 and video.audio.dtype == np.float32 and np.abs(video.audio).max() <= 1
    assert video.settings["sample_rate"] == video.sample_rate == backend.pipe.vocoder.config.output_sampling_rate
    assert video.settings["guidance"]["audio_cfg_scale"] == 7.0
    # The sound lasts as long as the video, within two latent audio frames (80 ms; the causal VAE ends early).
    assert abs(video.audio.shape[1] / video.sample_rate - len(video.frames) / backend.preset.fps) < 0.08


def test_ltx2_comparison_files_carry_each_panels_sound(loaded, tmp_path):
    backend, _ = loaded(LTX2)
    task = inputs.task(backend, inputs.COMMANDS["compare"], {"prompt": PROMPT, "stg_blocks": "2", **request(LTX2)})
    composed = results.compose(task, backend.render(task.request))
    paths = results.write(composed, results.in_folder(tmp_path))
    labels = [panel["label"] for panel in composed.document["panels"]]
    assert "modality 3, sound w 7" in labels[0] and "block 2" in labels[1]  # the preset's recipe in both panels
    for name, titles in (("cfg", labels[:1]), ("stg", labels[1:]), ("side_by_side", labels)):
        streams = video.audio_streams(paths[name])
        assert [s["title"] for s in streams] == titles
        assert all(s["codec"] == "aac" and s["rate"] == backend.sample_rate and s["channels"] == 2 for s in streams)


# Wan 2.2 ------------------------------------------------------------------------------------------------------
def expert_per_step(pipe, run) -> list[str]:
    """Which expert each transformer call went to, in order."""
    calls, handles = [], []
    for name in WAN22.experts:
        handles.append(getattr(pipe, name).register_forward_pre_hook(lambda *_, name=name: calls.append(name)))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return calls


def test_wan22_runs_each_step_on_the_expert_stock_uses(loaded):
    backend, stock = loaded(WAN22)
    options = request(WAN22, negative_prompt=NEGATIVE)
    ours = expert_per_step(backend.pipe, lambda: backend.generate(PROMPT, stg.Guidance(3.0), **options))
    theirs = expert_per_step(stock, lambda: stock_call(WAN22, stock, options, 3.0, prompt=PROMPT))
    assert ours == theirs[::2] == ["transformer", "transformer_2", "transformer_2"]  # stock: cond, then uncond


def test_wan22_second_cfg_scale_equals_stock(loaded):
    backend, stock = loaded(WAN22)
    options = request(WAN22)
    video = backend.generate(PROMPT, stg.Guidance(4.0, cfg_scale_2=2.0), negative_prompt=NEGATIVE, **options)
    reference = stock_call(WAN22, stock, options, 4.0, prompt=PROMPT, negative_prompt=NEGATIVE, guidance_scale_2=2.0)
    assert_same_video(WAN22, video, reference, stock)


def test_fp8_keeps_both_experts_in_float8_and_stays_close(folders, loaded):
    full, _ = loaded(WAN22)
    small = stg.Backend.load(str(folders(WAN22.tiny)), fp8=True)
    small.pipe.set_progress_bar_config(disable=True)
    for name in WAN22.experts:
        assert getattr(small.pipe, name).blocks[0].ffn.net[0].proj.weight.dtype == torch.float8_e4m3fn
    guidance = stg.Guidance(3.0, 1.0, "stg-r", [1])
    near, exact = (b.generate(PROMPT, guidance, **request(WAN22)).frames.astype(int) for b in (small, full))
    assert 0 < np.abs(near - exact).mean() < 8


# HunyuanVideo 1.5 -------------------------------------------------------------------------------------------
def test_hunyuan15_image_to_video_makes_the_size_asked_for(loaded):
    """The pipeline takes no size (it makes the bucket nearest the image's shape); the engine has it make the one
    asked for, which for an image of its bucket's shape is the pipeline's own choice (the CFG test holds that)."""
    backend, _ = loaded(HUNYUAN15_I2V)
    options = {**request(HUNYUAN15_I2V), "height": 16, "width": 32}
    assert backend.generate(PROMPT, stg.Guidance(6.0), **options).frames.shape[1:3] == (16, 32)


def test_guider_other_than_plain_cfg_is_refused(folders):
    pipe = diffusers.HunyuanVideo15Pipeline.from_pretrained(folders(HUNYUAN15.tiny))
    pipe.guider = pipe.guider.new(guidance_rescale=0.7)
    with pytest.raises(ValueError, match="guider sets {'guidance_rescale': 0.7}"):
        stg.Backend(pipe, families.FAMILIES["hunyuan-video-1.5"], presets.get("hunyuan-video-1.5"), "test")


# settings a model has nothing for -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case,extras,message",
    [
        (BY_ID["ltx:LTXPipeline"], dict(audio_cfg_scale=7.0), "audio_cfg_scale: this model makes no sound"),
        (BY_ID["wan:WanPipeline"], dict(audio_rescale=0.5), "audio_rescale: this model makes no sound"),
        (BY_ID["wan:WanPipeline"], dict(cfg_scale_2=3.0), "cfg_scale_2: this model has one expert"),
        (LTX2, dict(cfg_scale_2=3.0), "cfg_scale_2: this model has one expert"),
        (WAN22, dict(modality_scale=3.0), "modality_scale: this model has no modality guidance"),
    ],
    ids=lambda x: x.id if hasattr(x, "id") else None,
)
def test_settings_the_model_has_nothing_for_are_refused_before_any_work(case, extras, message, loaded):
    backend, _ = loaded(case)
    steps = []
    with pytest.raises(ValueError, match=message):
        backend.generate(PROMPT, stg.Guidance(3.0, **extras), callback=lambda s, t: steps.append(s), **request(case))
    assert steps == []


# layouts ------------------------------------------------------------------------------------------------------
def test_a_transformer_the_family_would_leave_unguided_is_refused(folders):
    pipe = diffusers.WanPipeline.from_pretrained(folders(WAN22.tiny))
    one_expert = replace(families.FAMILIES["wan"], transformers=("transformer",))
    with pytest.raises(ValueError, match=r"transformer_2 would run wrongly"):
        stg.Backend(pipe, one_expert, presets.get("wan-1.3b"), "test")


def test_a_pipeline_without_its_main_transformer_is_refused(folders):
    pipe = diffusers.WanPipeline.from_pretrained(folders(WAN22.tiny))
    pipe.transformer = None
    with pytest.raises(ValueError, match=r"transformers transformer_2 \(WanTransformer3DModel\) .* transformer would"):
        stg.Backend(pipe, families.FAMILIES["wan"], presets.get("wan-1.3b"), "test")


def test_experts_of_different_depths_are_refused(folders):
    pipe = diffusers.WanPipeline.from_pretrained(folders(WAN22.tiny))
    pipe.transformer_2.blocks = pipe.transformer_2.blocks[:3]
    with pytest.raises(ValueError, match="experts differ in depth"):
        stg.Backend(pipe, families.FAMILIES["wan"], presets.get("wan-1.3b"), "test")
