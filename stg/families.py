"""Model families as data: pipeline classes, where STG acts, and which transformer inputs follow the prompt.

The backend, the denoiser and the hooks read only this. A new family is an entry here, its settings in
presets/<family>.json (checked against this table when a model loads), a tiny offline build in stg/tiny/ and
a case in tests/tiny_cases.py, which holds the engine to stock diffusers.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from .perturb import BlockStack


@dataclass(frozen=True)
class Family:
    name: str
    pipelines: dict[str, bool]  # diffusers pipeline class -> takes an image (image-to-video)
    blocks: BlockStack
    # encode_prompt's outputs, in order; "negative_" ones feed the unconditional rows.
    encoded: tuple[str, ...]
    # pipeline argument -> transformer argument, for every prompt-dependent input.
    prompt_inputs: dict[str, str]
    # CFG-distilled models: the guidance scale is embedded (this transformer argument, scaled), no uncond pass.
    embedded_guidance: tuple[str, float] | None = None
    encode_kwargs: dict = field(default_factory=lambda: {"do_classifier_free_guidance": True})
    # Image-to-video pipelines that encode the image per latent row take one image per panel.
    image_per_panel: bool = True

    @property
    def has_cfg_pass(self) -> bool:
        return self.embedded_guidance is None

    def encode(self, pipe, prompt: str, negative_prompt: str) -> tuple[dict, dict]:
        """Encode both prompts once with the pipeline's own encoder and its stock call defaults."""
        kwargs = dict(self.encode_kwargs, prompt=prompt, device=pipe._execution_device)
        if self.has_cfg_pass:
            kwargs["negative_prompt"] = negative_prompt
        call_defaults = inspect.signature(type(pipe).__call__).parameters
        if "max_sequence_length" in call_defaults:
            kwargs["max_sequence_length"] = call_defaults["max_sequence_length"].default
        with torch.no_grad():
            outputs = pipe.encode_prompt(**kwargs)
        named = dict(zip(self.encoded, outputs if isinstance(outputs, tuple) else (outputs,)))
        positive = {k: v for k, v in named.items() if not k.startswith("negative_")}
        negative = {k.removeprefix("negative_"): v for k, v in named.items() if k.startswith("negative_")}
        return positive, negative


_T5_MASKED = ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask")
_T5 = ("prompt_embeds", "negative_prompt_embeds")
_MASKED_INPUTS = {"prompt_embeds": "encoder_hidden_states", "prompt_attention_mask": "encoder_attention_mask"}

FAMILIES = {
    f.name: f
    for f in [
        Family(
            name="ltx-video",
            pipelines={"LTXPipeline": False, "LTXImageToVideoPipeline": True},
            blocks=BlockStack(
                stack="transformer_blocks",
                attention="attn1",
                row_inputs=("hidden_states", "encoder_hidden_states", "temb", "image_rotary_emb", "encoder_attention_mask"),
                outputs=("hidden_states",),
            ),
            encoded=_T5_MASKED,
            prompt_inputs=_MASKED_INPUTS,
        ),
        Family(
            name="wan",
            pipelines={"WanPipeline": False, "WanImageToVideoPipeline": True},
            blocks=BlockStack(
                stack="blocks",
                attention="attn1",
                row_inputs=("hidden_states", "encoder_hidden_states", "temb"),
                outputs=("hidden_states",),
            ),
            encoded=_T5,
            prompt_inputs={"prompt_embeds": "encoder_hidden_states"},
            image_per_panel=False,
        ),
        Family(
            name="cogvideox",
            pipelines={"CogVideoXPipeline": False, "CogVideoXImageToVideoPipeline": True},
            blocks=BlockStack(
                stack="transformer_blocks",
                attention="attn1",
                row_inputs=("hidden_states", "encoder_hidden_states", "temb"),
                outputs=("hidden_states", "encoder_hidden_states"),
            ),
            encoded=_T5,
            prompt_inputs={"prompt_embeds": "encoder_hidden_states"},
        ),
        Family(
            name="mochi",
            pipelines={"MochiPipeline": False},
            blocks=BlockStack(
                stack="transformer_blocks",
                attention="attn1",
                row_inputs=("hidden_states", "encoder_hidden_states", "temb", "encoder_attention_mask"),
                outputs=("hidden_states", "encoder_hidden_states"),
            ),
            encoded=_T5_MASKED,
            prompt_inputs=_MASKED_INPUTS,
        ),
        Family(
            name="hunyuan-video",
            pipelines={"HunyuanVideoPipeline": False},
            blocks=BlockStack(
                stack="transformer_blocks",
                attention="attn",
                row_inputs=("hidden_states", "encoder_hidden_states", "temb", "attention_mask"),
                outputs=("hidden_states", "encoder_hidden_states"),
            ),
            encoded=("prompt_embeds", "pooled_prompt_embeds", "prompt_attention_mask"),
            prompt_inputs={
                "prompt_embeds": "encoder_hidden_states",
                "pooled_prompt_embeds": "pooled_projections",
                "prompt_attention_mask": "encoder_attention_mask",
            },
            embedded_guidance=("guidance", 1000.0),
            encode_kwargs={},
        ),
    ]
}

SUPPORTED_PIPELINES = {name: family for family in FAMILIES.values() for name in family.pipelines}


def check_presets(presets: dict) -> None:
    """Every preset names a known family and one of its pipelines; every supported pipeline has a full-size
    preset, whose defaults a model given by folder or hub id takes."""
    for preset in presets.values():
        family = FAMILIES.get(preset.family)
        if family is None or preset.pipeline not in family.pipelines:
            raise ValueError(f"preset {preset.key!r}: family {preset.family!r} with pipeline {preset.pipeline!r} is not "
                             f"in stg/families.py; families: {', '.join(FAMILIES)}")
    covered = {p.pipeline for p in presets.values() if p.tiny is None}
    for family in FAMILIES.values():
        missing = [name for name in family.pipelines if name not in covered]
        if missing:
            raise ValueError(f"family {family.name!r} has no preset for {', '.join(missing)}: add one to "
                             f"presets/{family.name}.json")


def for_pipeline(class_name: str) -> Family:
    try:
        return SUPPORTED_PIPELINES[class_name]
    except KeyError:
        raise ValueError(
            f"model: pipeline class {class_name!r} is not supported; supported: {', '.join(sorted(SUPPORTED_PIPELINES))}"
        ) from None
