"""Every family's tiny model as a test case, with what its stock pipeline looks like stated independently."""

from __future__ import annotations

from dataclasses import dataclass

import diffusers
import numpy as np
import pytest
from PIL import Image

import stg
from stg import tiny

PROMPT = "a red fox runs on the grass"
NEGATIVE = "blurry worst quality"
STEPS = 3
SEED = 7
QUANTUM = 1 / 255 + 1e-6


@dataclass(frozen=True)
class Case:
    """What a family's stock pipeline and transformer look like, stated here independently of stg.families."""

    tiny: str
    pipeline: str
    stack: str = "transformer_blocks"
    attention: str = "attn1"
    dual_stream: bool = False  # blocks return (hidden_states, encoder_hidden_states)
    joint: bool = False  # text tokens share the video self-attention
    cfg: bool = True  # False: embedded guidance, no unconditional pass
    encoded: tuple = ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask")
    negatives: tuple = (("encoder_hidden_states", "negative_prompt_embeds"), ("encoder_attention_mask", "negative_prompt_attention_mask"))
    image: bool = False

    @property
    def id(self):
        return self.pipeline


T5_ONLY = dict(encoded=("prompt_embeds", "negative_prompt_embeds"), negatives=(("encoder_hidden_states", "negative_prompt_embeds"),))
CASES = [
    Case("ltx", "LTXPipeline"),
    Case("ltx", "LTXImageToVideoPipeline", image=True),
    Case("wan", "WanPipeline", stack="blocks", **T5_ONLY),
    Case("wan-i2v", "WanImageToVideoPipeline", stack="blocks", image=True, **T5_ONLY),
    Case("cogvideox", "CogVideoXPipeline", dual_stream=True, joint=True, **T5_ONLY),
    Case("cogvideox-i2v", "CogVideoXImageToVideoPipeline", dual_stream=True, joint=True, image=True, **T5_ONLY),
    Case("mochi", "MochiPipeline", dual_stream=True, joint=True),
    Case("hunyuan-video", "HunyuanVideoPipeline", attention="attn", dual_stream=True, joint=True, cfg=False,
         encoded=("prompt_embeds", "pooled_prompt_embeds", "prompt_attention_mask"), negatives=()),
]
CASE_IDS = [c.id for c in CASES]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    built = {}

    def folder(name):
        if name not in built:
            built[name] = tiny.build(name, tmp_path_factory.mktemp(name))
        return built[name]

    return folder


@pytest.fixture(scope="module")
def loaded(folders):
    """One Backend and one independently loaded stock pipeline per case."""
    cache = {}

    def get(case: Case):
        if case not in cache:
            folder = folders(case.tiny)
            backend = stg.Backend.load(str(folder), pipeline=case.pipeline)
            stock = getattr(diffusers, case.pipeline).from_pretrained(folder)
            stock.set_progress_bar_config(disable=True)
            backend.pipe.set_progress_bar_config(disable=True)
            cache[case] = backend, stock
        return cache[case]

    return get


def request(case: Case, **extra) -> dict:
    sizes = {k: v for k, v in tiny.TINY_SIZES[case.tiny].items() if k in ("num_frames", "height", "width")}
    options = {"seed": SEED, "steps": STEPS, **sizes, **extra}
    if case.image:
        rng = np.random.default_rng(0)
        options["image"] = Image.fromarray(rng.integers(0, 255, (sizes["height"], sizes["width"], 3), dtype=np.uint8))
    return options


def cfg_scale(case: Case) -> float:
    return 3.0 if case.cfg else 6.0
