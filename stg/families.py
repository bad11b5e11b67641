"""Model families as data: pipeline classes, where STG acts, and which transformer inputs follow the prompt.

The backend, the denoiser and the hooks read only this. A new family is an entry here, its settings in
presets/<family>.json (checked against this table when a model loads), a tiny offline build in stg/tiny/ and
a case in tests/tiny_cases.py, which holds the engine to stock diffusers.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch

from .perturb import MAIN, TEMPORAL, BlockStack, Stages


@dataclass(frozen=True)
class Family:
    name: str
    pipelines: dict[str, bool]  # diffusers pipeline class -> takes an image (image-to-video)
    blocks: BlockStack
    # encode_prompt's outputs, in order; "negative_" ones feed the unconditional rows. None: the model takes no prompt.
    encoded: tuple[str, ...]
    # pipeline argument -> transformer argument, for every prompt-dependent input.
    prompt_inputs: dict[str, str]
    # CFG-distilled models: the guidance scale is embedded (this transformer argument, scaled), no uncond pass.
    embedded_guidance: tuple[str, float] | None = None
    encode_kwargs: dict = field(default_factory=lambda: {"do_classifier_free_guidance": True})
    # Image-to-video pipelines that encode the image per latent row take one image per panel.
    image_per_panel: bool = True
    # The pipeline components that are transformers it calls, one per expert (Wan 2.2: high noise, low noise).
    transformers: tuple[str, ...] = ("transformer",)
    # The transformer input each of its outputs predicts; a second output is the sound.
    samples: tuple[str, ...] = ("hidden_states",)
    # Guidance combines x0 = sample - sigma v (LTX-2) rather than the velocity the transformer returns.
    x0: bool = False
    # Modality guidance: rows whose video and sound do not attend to each other (the blocks' `isolation`).
    modality: bool = False
    # Component and config key of the sound's sample rate, for models that make sound.
    sample_rate: tuple[str, str] | None = None
    # Call arguments that switch the pipeline's own guidance off (the denoiser guides instead).
    guidance_off: dict = field(default_factory=lambda: {"guidance_scale": 1.0})
    # A guider component the pipeline guides with: each request gets a disabled copy of it.
    guider: str | None = None
    # Where the pipeline transforms the encoded prompt before its transformer: the negative prompt's
    # transformer inputs from (pipeline, encoded negative); otherwise `prompt_inputs` renames them.
    negative_adapter: Callable | None = None
    # Run once per transformer at load, before the hooks (e.g. switching on the model's own STG processor).
    prepare_transformer: Callable | None = None
    # The VAE decodes one video at a time (HunyuanVideo 1.5's causal attention mask breaks on a batch).
    decode_one_at_a_time: bool = False
    # Pipelines that take no size (HunyuanVideo 1.5 image-to-video sizes the video from the image): (pipeline,
    # height, width) -> the request pipeline's attributes that make it that size.
    sized_by: Callable | None = None
    # Image-to-video call arguments from (pipeline, image, panels), where neither one image per panel nor one
    # image for all (`image_per_panel`) is what the pipeline takes.
    image_inputs: Callable | None = None
    # Factorized attention: the temporal layers, perturbed by a pass of their own (`blocks` are then the spatial ones).
    temporal: BlockStack | None = None
    # A model conditioned on an image alone: the inputs of an unconditional row, made from the rows' own inputs.
    unconditional: Callable[[dict], dict] | None = None
    # The axis of frames in a prediction, for a CFG scale per frame (SVD's min_guidance_scale).
    frame_axis: int | None = None
    # Settings of the model's own (guidance.EXTRAS) that are pipeline call arguments, the same in every panel of a run.
    call_settings: tuple[str, ...] = ()
    # The call argument the model is conditioned on the frame rate with (it gets the files' frame rate).
    fps_argument: str | None = None
    # Stages that hold the layers with convolutions between them (a UNet's down, mid and up blocks): a perturbed row
    # reuses its conditional twin's whole stages before its first perturbed layer, as it reuses blocks.
    stages: Stages | None = None

    @property
    def step_cache(self) -> bool:
        """A step cache skips one stack of blocks as a whole: where spatial and temporal layers interleave, none is."""
        return self.temporal is None

    @property
    def layer_kinds(self) -> dict[str, BlockStack]:
        """The kinds of layer STG perturbs, each numbered on its own: the main (spatial) one, and temporal ones."""
        return {MAIN: self.blocks, **({TEMPORAL: self.temporal} if self.temporal is not None else {})}

    @property
    def takes_prompt(self) -> bool:
        return bool(self.encoded)

    def image_arguments(self, pipe, image, panels: int) -> dict:
        if self.image_inputs is not None:
            return self.image_inputs(pipe, image, panels)
        return {"image": [image] * panels if self.image_per_panel else image}

    @property
    def has_cfg_pass(self) -> bool:
        return self.embedded_guidance is None

    @property
    def makes_sound(self) -> bool:
        return self.sample_rate is not None

    def encode(self, pipe, prompt: str, negative_prompt: str) -> tuple[dict, dict]:
        """Encode both prompts once with the pipeline's own encoder and its stock call defaults.

        Returns the pipeline arguments of the prompt and the transformer inputs of the negative prompt.
        """
        if not self.takes_prompt:
            return {}, {}
        kwargs = dict(self.encode_kwargs, device=pipe._execution_device)
        if text_limit(pipe) is not None:
            kwargs["max_sequence_length"] = text_limit(pipe)
        together = self.has_cfg_pass and "negative_prompt" in inspect.signature(pipe.encode_prompt).parameters
        with torch.no_grad():
            named = self._encode(pipe, prompt=prompt, **({"negative_prompt": negative_prompt} if together else {}),
                                 **kwargs)
            positive = {k: v for k, v in named.items() if not k.startswith("negative_")}
            negative = {k.removeprefix("negative_"): v for k, v in named.items() if k.startswith("negative_")}
            if self.has_cfg_pass and not together:  # encoders without a negative prompt: encode it as a prompt
                negative = self._encode(pipe, prompt=negative_prompt, **kwargs)
            if self.negative_adapter is not None:
                return positive, self.negative_adapter(pipe, negative)
        return positive, {self.prompt_inputs[k]: v for k, v in negative.items() if k in self.prompt_inputs}

    def _encode(self, pipe, **kwargs) -> dict:
        outputs = pipe.encode_prompt(**kwargs)
        return dict(zip(self.encoded, outputs if isinstance(outputs, tuple) else (outputs,)))


def text_limit(pipe) -> int | None:
    """The tokens of a prompt the pipeline's text encoder reads (its call's default max_sequence_length): the rest of
    a longer prompt is cut off."""
    parameter = inspect.signature(type(pipe).__call__).parameters.get("max_sequence_length")
    return None if parameter is None else parameter.default


def _ltx2_connectors(pipe, negative: dict) -> dict:
    """LTX-2 feeds Gemma's states through its text connectors, one per modality, as the pipeline does."""
    padding_side = getattr(pipe.tokenizer, "padding_side", "left")
    video, audio, mask = pipe.connectors(negative["prompt_embeds"], negative["prompt_attention_mask"],
                                         padding_side=padding_side)
    return {"encoder_hidden_states": video, "audio_encoder_hidden_states": audio,
            "encoder_attention_mask": mask, "audio_encoder_attention_mask": mask}


def _ltx2_image(pipe, image, panels: int) -> dict:
    """LTX-2 re-compresses the image (H.264 at the text encoder's CRF) and then reads one image per latent row,
    but takes only one: compress it once as the pipeline would, and give each panel its copy."""
    import numpy as np
    from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf, resolve_default_image_crf
    from PIL import Image

    crf = resolve_default_image_crf(pipe.text_encoder)
    if crf:
        image = Image.fromarray(apply_image_conditioning_crf(np.array(image.convert("RGB")), crf))
    return {"image": [image] * panels, "image_crf": 0}


def _ltx2_own_stg(transformer) -> None:
    """A config without `perturbed_attn` makes LTX-2 ignore STG without a word: give its blocks the model's
    own perturbed processor, which computes exactly what the plain one does for every row it leaves alone."""
    from diffusers.models.transformers.transformer_ltx2 import LTX2PerturbedAttnProcessor

    for block in transformer.transformer_blocks:
        if not block.perturbed_attn:
            block.perturbed_attn = True
            for attention in (block.attn1, block.audio_attn1):
                attention.set_processor(LTX2PerturbedAttnProcessor())


def _svd_unconditional(inputs: dict) -> dict:
    """SVD's unconditional row, as its pipeline makes it: zero image embeddings, and zero image latents in the second
    half of the UNet's input channels (the first half is the noisy latents)."""
    sample = inputs["sample"]
    half = sample.shape[2] // 2
    return {"encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
            "sample": torch.cat([sample[:, :, :half], torch.zeros_like(sample[:, :, half:])], dim=2)}


def _svd_layers(kind: str) -> tuple[str, ...]:
    """One kind of SVD's transformer layers, in the order the UNet runs them: down, mid, up (`named_modules` lists
    mid last)."""
    return tuple(f"{part}.attentions.*.{kind}.*" for part in ("down_blocks.*", "mid_block", "up_blocks.*"))


def _hunyuan_video15_size(pipe, height: int, width: int) -> dict:
    """HunyuanVideo 1.5 image-to-video picks the bucket of its target size nearest the image's shape, crops the image
    to it and makes a video of that size: have it pick the size asked for (for an image whose bucket that is, such
    as 480x848 for 16:9 at 480p, the very size it picks itself)."""
    processor = copy.copy(pipe.video_processor)
    processor.calculate_default_height_width = lambda *args, **kwargs: (height, width)
    return {"video_processor": processor}


# HunyuanVideo's dual-stream blocks, as HunyuanVideo 1.5 keeps them.
_HUNYUAN_BLOCKS = BlockStack(
    stack="transformer_blocks",
    attention="attn",
    row_inputs=("hidden_states", "encoder_hidden_states", "temb", "attention_mask"),
    outputs=("hidden_states", "encoder_hidden_states"),
)
_T5_MASKED = ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask")
_T5 = ("prompt_embeds", "negative_prompt_embeds")
_MASKED_INPUTS = {"prompt_embeds": "encoder_hidden_states", "prompt_attention_mask": "encoder_attention_mask"}


def _open_sora_blocks(stack: str) -> BlockStack:
    return BlockStack(stack=stack, attention="attn1", outputs=("hidden_states",),
                      row_inputs=("hidden_states", "encoder_hidden_states", "encoder_attention_mask", "temb"))

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
            transformers=("transformer", "transformer_2"),  # Wan 2.2 A14B: high-noise and low-noise experts
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
            blocks=_HUNYUAN_BLOCKS,
            encoded=("prompt_embeds", "pooled_prompt_embeds", "prompt_attention_mask"),
            prompt_inputs={
                "prompt_embeds": "encoder_hidden_states",
                "pooled_prompt_embeds": "pooled_projections",
                "prompt_attention_mask": "encoder_attention_mask",
            },
            embedded_guidance=("guidance", 1000.0),
            encode_kwargs={},
        ),
        Family(
            name="ltx2",
            pipelines={"LTX2Pipeline": False, "LTX2ImageToVideoPipeline": True},
            blocks=BlockStack(
                stack="transformer_blocks",
                attention="attn1",
                row_inputs=(
                    "hidden_states", "audio_hidden_states", "encoder_hidden_states", "audio_encoder_hidden_states",
                    "temb", "temb_audio", "temb_ca_scale_shift", "temb_ca_audio_scale_shift", "temb_ca_gate",
                    "temb_ca_audio_gate", "temb_prompt", "temb_prompt_audio", "video_rotary_emb",
                    "audio_rotary_emb", "ca_video_rotary_emb", "ca_audio_rotary_emb", "encoder_attention_mask",
                    "audio_encoder_attention_mask", "self_attention_mask", "audio_self_attention_mask",
                    "a2v_cross_attention_mask", "v2a_cross_attention_mask",
                ),
                outputs=("hidden_states", "audio_hidden_states"),
                identity_argument="perturbation_mask",  # value passthrough in the video and the audio self-attention
                isolation=("audio_to_video_attn", "video_to_audio_attn"),
            ),
            encoded=_T5_MASKED,
            prompt_inputs={},
            samples=("hidden_states", "audio_hidden_states"),
            x0=True,
            modality=True,
            sample_rate=("vocoder", "output_sampling_rate"),
            # Every stock default is on (STG 1, modality 3, rescale 0.7, audio w 7): name each one off.
            guidance_off=dict(
                guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0,
                audio_guidance_scale=None, audio_stg_scale=None, audio_modality_scale=None,
                audio_guidance_rescale=None, spatio_temporal_guidance_blocks=None,
            ),
            negative_adapter=_ltx2_connectors,
            prepare_transformer=_ltx2_own_stg,
            image_inputs=_ltx2_image,
        ),
        Family(
            name="hunyuan-video-1.5",
            pipelines={"HunyuanVideo15Pipeline": False, "HunyuanVideo15ImageToVideoPipeline": True},
            blocks=_HUNYUAN_BLOCKS,
            encoded=("prompt_embeds", "prompt_embeds_mask", "prompt_embeds_2", "prompt_embeds_mask_2"),
            prompt_inputs={
                "prompt_embeds": "encoder_hidden_states",
                "prompt_embeds_mask": "encoder_attention_mask",
                "prompt_embeds_2": "encoder_hidden_states_2",
                "prompt_embeds_mask_2": "encoder_attention_mask_2",
            },
            encode_kwargs={},
            image_per_panel=False,
            guidance_off={},
            guider="guider",
            decode_one_at_a_time=True,
            sized_by=_hunyuan_video15_size,
        ),
        # Open-Sora 1.2 (stg/opensora): STDiT3's spatial blocks, each followed by a temporal one, 28 of each kind.
        # Its unconditional text is the model's learned null text (or an encoded negative prompt, where given).
        Family(
            name="open-sora",
            pipelines={"OpenSoraPipeline": False},
            blocks=_open_sora_blocks("spatial_blocks"),
            temporal=_open_sora_blocks("temporal_blocks"),
            encoded=_T5_MASKED,
            prompt_inputs=_MASKED_INPUTS,
            fps_argument="fps",
        ),
        # Stable Video Diffusion: a UNet whose transformers attend over space (transformer_blocks) and over time
        # (temporal_transformer_blocks) in separate layers, 16 of each; conditioned on an image alone.
        Family(
            name="svd",
            pipelines={"StableVideoDiffusionPipeline": True},
            blocks=BlockStack(
                stack=_svd_layers("transformer_blocks"),
                attention="attn1",
                row_inputs=("hidden_states", "encoder_hidden_states"),
                outputs=("hidden_states",),
            ),
            temporal=BlockStack(
                stack=_svd_layers("temporal_transformer_blocks"),
                attention="attn1",
                row_inputs=("hidden_states", "encoder_hidden_states"),
                outputs=("hidden_states",),
            ),
            encoded=(),
            prompt_inputs={},
            transformers=("unet",),
            samples=("sample",),
            guidance_off={"min_guidance_scale": 1.0, "max_guidance_scale": 1.0},
            unconditional=_svd_unconditional,
            frame_axis=1,
            call_settings=("motion_bucket_id", "noise_aug_strength", "decode_chunk_size"),
            fps_argument="fps",
            stages=Stages(paths=("down_blocks.*", "mid_block", "up_blocks.*"),
                          row_inputs=("hidden_states", "res_hidden_states_tuple", "temb", "encoder_hidden_states",
                                      "image_only_indicator")),
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
