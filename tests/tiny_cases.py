"""Every family's tiny model as a test case, with what its stock pipeline looks like stated independently."""

from __future__ import annotations

from dataclasses import dataclass

import inspect

import numpy as np
import pytest
import torch
from PIL import Image

import stg
from stg import tiny
from stg.pipelines import pipeline_class

PROMPT = "a red fox runs on the grass"
NEGATIVE = "blurry worst quality"
STEPS = 3
SEED = 7
QUANTUM = 1 / 255 + 1e-6
AUDIO_TOLERANCE = 1e-4  # waveforms in [-1, 1], floating-point rounding of differently batched passes

# LTX-2's stock call turns STG, modality guidance, rescale and a louder sound CFG on by default: plain CFG
# names each one off and lets the sound follow the video.
LTX2_PLAIN = dict(stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0, audio_guidance_scale=None,
                  audio_stg_scale=None, audio_modality_scale=None, audio_guidance_rescale=None)


@dataclass(frozen=True)
class Case:
    """What a family's stock pipeline and transformer look like, stated here independently of stg.families."""

    tiny: str
    pipeline: str
    stack: str = "transformer_blocks"
    attention: str = "attn1"
    streams: tuple = ("hidden_states",)  # a block's outputs, by the input they update (dual-stream: two)
    joint: bool = False  # text tokens share the video self-attention
    cfg: bool = True  # False: embedded guidance, no unconditional pass
    encoded: tuple = ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask")
    negatives: tuple = (("encoder_hidden_states", "negative_prompt_embeds"), ("encoder_attention_mask", "negative_prompt_attention_mask"))
    image: bool = False
    experts: tuple = ("transformer",)  # the transformers the pipeline calls
    guider: bool = False  # the CFG scale is a guider component's setting, not a call argument
    own_stg: bool = False  # the stock pipeline has STG of its own: that is the reference

    @property
    def id(self):
        return f"{self.tiny}:{self.pipeline}"

    @property
    def extras(self) -> dict:
        """Settings beyond CFG and STG this model has, at values its recipes use."""
        if self.own_stg:
            return dict(modality_scale=3.0, audio_cfg_scale=7.0)
        return dict(cfg_scale_2=2.0) if len(self.experts) > 1 else {}

    @property
    def sound(self) -> bool:
        return "audio_hidden_states" in self.streams

    def stock_kwargs(self, cfg_scale: float) -> dict:
        """Stock call arguments for plain CFG at this scale."""
        if self.guider:
            return {}
        return dict(guidance_scale=cfg_scale, **(LTX2_PLAIN if self.own_stg else {}))


T5_ONLY = dict(encoded=("prompt_embeds", "negative_prompt_embeds"), negatives=(("encoder_hidden_states", "negative_prompt_embeds"),))
WAN22 = dict(stack="blocks", experts=("transformer", "transformer_2"), **T5_ONLY)
LTX2 = dict(streams=("hidden_states", "audio_hidden_states"), own_stg=True)
HUNYUAN15_TEXT = ("prompt_embeds", "prompt_embeds_mask", "prompt_embeds_2", "prompt_embeds_mask_2")
HUNYUAN15 = dict(
    attention="attn", streams=("hidden_states", "encoder_hidden_states"), joint=True, guider=True,
    encoded=HUNYUAN15_TEXT,
    negatives=tuple(zip(("encoder_hidden_states", "encoder_attention_mask", "encoder_hidden_states_2", "encoder_attention_mask_2"),
                        HUNYUAN15_TEXT)),
)
DUAL = ("hidden_states", "encoder_hidden_states")
CASES = [
    Case("ltx", "LTXPipeline"),
    Case("ltx", "LTXImageToVideoPipeline", image=True),
    Case("wan", "WanPipeline", stack="blocks", **T5_ONLY),
    Case("wan-i2v", "WanImageToVideoPipeline", stack="blocks", image=True, **T5_ONLY),
    Case("cogvideox", "CogVideoXPipeline", streams=DUAL, joint=True, **T5_ONLY),
    Case("cogvideox-i2v", "CogVideoXImageToVideoPipeline", streams=DUAL, joint=True, image=True, **T5_ONLY),
    Case("mochi", "MochiPipeline", streams=DUAL, joint=True),
    Case("hunyuan-video", "HunyuanVideoPipeline", attention="attn", streams=DUAL, joint=True, cfg=False,
         encoded=("prompt_embeds", "pooled_prompt_embeds", "prompt_attention_mask"), negatives=()),
    Case("ltx2", "LTX2Pipeline", **LTX2),
    Case("ltx2", "LTX2ImageToVideoPipeline", image=True, **LTX2),
    Case("ltx2.5", "LTX2Pipeline", **LTX2),  # Gemma 4, gated attention, a duration head
    Case("wan2.2", "WanPipeline", **WAN22),
    Case("wan2.2-i2v", "WanImageToVideoPipeline", image=True, **WAN22),
    Case("wan2.2-ti2v", "WanPipeline", stack="blocks", **T5_ONLY),
    Case("hunyuan-video-1.5", "HunyuanVideo15Pipeline", **HUNYUAN15),
    # It takes no size: it makes the bucket of its target size nearest the image's shape, here the image's 32x32.
    Case("hunyuan-video-1.5-i2v", "HunyuanVideo15ImageToVideoPipeline", image=True, **HUNYUAN15),
    # Spatial blocks are its main stack (the temporal ones, a second kind, are tested in test_opensora_stg.py).
    Case("open-sora", "OpenSoraPipeline", stack="spatial_blocks"),
]
CASE_IDS = [c.id for c in CASES]
BY_ID = dict(zip(CASE_IDS, CASES))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    built = {}

    def folder(name, **overrides):
        key = (name, repr(sorted(overrides.items())))
        if key not in built:
            built[key] = tiny.build(name, tmp_path_factory.mktemp(name), **overrides)
        return built[key]

    return folder


@pytest.fixture(scope="module")
def loaded(folders):
    """One Backend and one independently loaded stock pipeline per case."""
    cache = {}

    def get(case: Case):
        if case not in cache:
            folder = folders(case.tiny)
            backend = stg.Backend.load(str(folder), pipeline=case.pipeline)
            stock = pipeline_class(case.pipeline).from_pretrained(folder)
            stock.set_progress_bar_config(disable=True)
            backend.pipe.set_progress_bar_config(disable=True)
            cache[case] = backend, stock
        return cache[case]

    return get


def request(case: Case, roomy: bool = False, **extra) -> dict:
    """Call options at the tiny model's smallest sizes; roomy: at least 32x32 px, enough video tokens for
    attention to matter."""
    sizes = {k: v for k, v in tiny.TINY_SIZES[case.tiny].items() if k in ("num_frames", "height", "width")}
    if roomy:
        sizes.update(height=max(32, sizes["height"]), width=max(32, sizes["width"]))
    options = {"seed": SEED, "steps": STEPS, **sizes, **extra}
    if case.image:
        rng = np.random.default_rng(0)
        shape = (options["height"], options["width"], 3)
        options["image"] = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8))
    return options


def cfg_scale(case: Case) -> float:
    return 3.0 if case.cfg else 6.0


def stock_call(case: Case, stock, options: dict, cfg: float, **kwargs):
    """The stock pipeline's output for these options at CFG scale cfg (frames, and sound where it makes it)."""
    options = dict(options)
    seed = options.pop("seed")
    steps = options.pop("steps")
    takes = inspect.signature(type(stock).__call__).parameters
    options = {k: v for k, v in options.items() if k in takes or k not in ("height", "width")}
    guider = stock.guider if case.guider else None
    if case.guider:  # the CFG scale is the guider's setting
        stock.guider = guider.new(guidance_scale=cfg)
    try:
        out = stock(
            num_inference_steps=steps,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="np",
            **options,
            **{**case.stock_kwargs(cfg), **kwargs},
        )
    finally:
        if case.guider:
            stock.guider = guider
    return out


def assert_frames_close(ours: np.ndarray, reference: np.ndarray):
    assert ours.shape == reference.shape
    assert np.abs(ours.astype(np.float64) / 255 - reference).max() <= QUANTUM


def assert_same_video(case: Case, ours: stg.Video, reference, stock):
    """Frames within one quantum; the sound, where the model makes it, within floating-point rounding."""
    assert_frames_close(ours.frames, reference.frames[0])
    if case.sound:
        expected = reference.audio[0].float().numpy()
        assert ours.audio.shape == expected.shape and ours.sample_rate == stock.vocoder.config.output_sampling_rate
        assert np.abs(ours.audio - expected).max() <= AUDIO_TOLERANCE
    else:
        assert ours.audio is None and ours.sample_rate is None
