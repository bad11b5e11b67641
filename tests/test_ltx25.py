"""LTX-2.5 and the distilled LTX-2 checkpoints: the tiny LTX-2.5 (Gemma 4 text encoder, duration head, the distilled
scheduler) against the stock `LTX2Pipeline`, run as its preset publishes it (w 1 on the distilled sigmas) and with
STG added; and at w 1 no unconditional pass."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES

import stg
from stg import inputs, presets

PROMPT = "a red fox runs through fresh snow"
SEED = 3
QUANTUM = 1 / 255 + 1e-6
# The distilled recipe in diffusers' docs (LTX-2.5 section): w 1 for video and sound on the distilled sigmas; every
# other guidance of the stock call named off, since its defaults turn STG and modality guidance on even at w 1
# (diffusers issue 14649). A sound setting left None follows the video's.
PUBLISHED = dict(sigmas=DISTILLED_SIGMA_VALUES, guidance_scale=1.0, audio_guidance_scale=None, stg_scale=0.0,
                 audio_stg_scale=None, modality_scale=1.0, audio_modality_scale=None, guidance_rescale=0.0,
                 audio_guidance_rescale=None)


@pytest.fixture(scope="module")
def loaded():
    """The tiny-ltx2.5 preset through the engine, and the stock pipeline from the same folder."""
    backend = stg.Backend.load("tiny-ltx2.5")
    stock = diffusers.LTX2Pipeline.from_pretrained(backend.pipe.config._name_or_path)
    for pipe in (backend.pipe, stock):
        pipe.set_progress_bar_config(disable=True)
    return backend, stock


def _stock(stock, backend, **guidance):
    """The stock pipeline at the preset's size and seed, on the distilled sigmas, CFG off (as published)."""
    d = backend.preset.defaults
    return stock(prompt=PROMPT, height=d["height"], width=d["width"], num_frames=d["num_frames"],
                 num_inference_steps=8, generator=torch.Generator("cpu").manual_seed(SEED), output_type="np",
                 **{**PUBLISHED, **guidance})


def _compare(backend):
    task = inputs.task(backend, inputs.COMMANDS["compare"], {"prompt": PROMPT, "seed": SEED})
    return task, backend.render(task.request)


def test_tiny_ltx25_has_gemma4_and_a_duration_head(loaded):
    backend, stock = loaded
    assert type(backend.pipe.text_encoder).__name__ == "Gemma4UnifiedForConditionalGeneration"
    assert type(backend.pipe.duration_head).__name__ == "LTX2DurationHead"
    assert backend.pipe.scheduler.config.use_dynamic_shifting is False
    # Without num_frames the stock pipeline asks the duration head how long the video should be: a length of the
    # form 8n + 1 within its bounds (1 to 20 s at 24 fps).
    d = backend.preset.defaults
    video = stock(prompt=PROMPT, height=d["height"], width=d["width"], num_inference_steps=8,
                  generator=torch.Generator("cpu").manual_seed(SEED), output_type="np", **PUBLISHED).frames
    assert (video.shape[1] - 1) % 8 == 0 and 24 <= video.shape[1] <= 20 * 24 + 1


def test_the_distilled_presets_take_diffusers_sigmas():
    for key in ("ltx-2.5", "ltx-2-distilled", "tiny-ltx2.5"):
        preset = presets.get(key)
        assert list(preset.sigmas) == DISTILLED_SIGMA_VALUES
        assert preset.bounds("steps")[:2] == (len(DISTILLED_SIGMA_VALUES),) * 2  # one step per sigma, no other count
        assert preset.defaults["cfg_scale"] == 1.0 and preset.defaults["modality_scale"] == 1.0
        assert preset.defaults["audio_cfg_scale"] == 1.0 and preset.defaults["stg_scale"] > 0


def test_comparison_at_the_defaults_equals_stock_distilled_and_stock_with_stg(loaded):
    backend, stock = loaded
    task, (left, right) = _compare(backend)
    assert [p.cfg_scale for p in task.request.panels] == [1.0, 1.0]
    published = _stock(stock, backend)
    with_stg = _stock(stock, backend, stg_scale=1.0, spatio_temporal_guidance_blocks=[2], guidance_rescale=0.7)
    for ours, theirs in ((left, published), (right, with_stg)):
        assert np.abs(ours.frames / 255 - theirs.frames[0]).max() <= QUANTUM
        assert np.abs(ours.audio - theirs.audio[0].float().numpy()).max() < 1e-4
    assert np.abs(left.frames.astype(int) - right.frames.astype(int)).max() > 1  # STG changed the video
    # The distilled sigmas are what ran: the stock default schedule for 8 steps gives another video.
    linear = _stock(stock, backend, sigmas=None)
    assert np.abs(linear.frames[0] - published.frames[0]).max() > QUANTUM


def test_no_unconditional_pass_at_w_1(loaded):
    backend, _ = loaded
    rows = []
    handle = backend.pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        _compare(backend)
    finally:
        handle.remove()
    assert rows == [3] * 8  # the distilled panel's conditional row; the STG panel's conditional and perturbed rows
