"""The one loaded model: `Backend.load`, then `generate` (one panel), `compare` (two panels, one run) and `sweep`
(a reference and one panel per candidate block, in batched runs)."""

from __future__ import annotations

import inspect
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import diffusers
import numpy as np
import torch
from diffusers import DiffusionPipeline

from . import cache, families, presets
from .cache import StepCache
from .denoiser import KINDS, GuidedDenoiser, Progress, passes_per_step
from .families import Family
from .guidance import SWEEP_LAYERS, Guidance
from .layout import OneRequestAtATime, check_guider, experts, rebuild
from .limits import CACHE_THRESHOLDS, MAX_SEED, PANELS_PER_RUN, integer_rule, text_problem
from .perturb import install, install_stages
from .pipelines import pipeline_class
from .values import sent

SWEEP_CANDIDATES = 8  # blocks a sweep tries when none are named, spread over the depth


class Cancelled(Exception):
    """Raise from a step callback to stop a run; the shared model is left as it was."""


@dataclass
class Video:
    """One generated panel: uint8 frames [frames, height, width, 3], its sound where the model makes sound
    (float waveform [channels, samples] at sample_rate), and what reproduces it."""

    frames: np.ndarray
    fps: int
    seed: int
    settings: dict = field(default_factory=dict)
    audio: np.ndarray | None = None
    sample_rate: int | None = None


@dataclass(frozen=True)
class Request:
    """A validated request with every None resolved to the preset default: its panels, all from the same noise,
    go through in runs of at most panels_per_run (None: one run); cache: the step cache's threshold (0: off).
    Picklable, to hand to a GPU worker."""

    prompt: str
    negative_prompt: str
    image: object
    seed: int
    steps: int
    num_frames: int
    height: int
    width: int
    panels: tuple[Guidance, ...] = ()
    panels_per_run: int | None = None
    cache: float = 0.0

    @property
    def runs(self) -> list[tuple[Guidance, ...]]:
        size = self.panels_per_run or max(len(self.panels), 1)
        return [self.panels[i:i + size] for i in range(0, len(self.panels), size)]

    @property
    def total_steps(self) -> int:
        """Denoising steps over all runs: what a progress bar counts to."""
        return self.steps * len(self.runs)


def _default_device_dtype(device, dtype):
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return torch.device(device), dtype


def _check_int(field: str, value, low: int, high: int, step: int = 1, offset: int = 0) -> int:
    """An integer in [low, high] with (value - offset) divisible by step; one message names the whole rule."""
    whole = isinstance(value, (int, np.integer)) or isinstance(value, float) and value.is_integer()
    if isinstance(value, bool) or not whole or not low <= int(value) <= high or (int(value) - offset) % step:
        raise ValueError(f"{field} must be {integer_rule(low, high, step, offset)}, got {sent(value)}")
    return int(value)


class Backend:
    """Holds one pipeline; requests never change it (perturbation is per call, per batch row)."""

    def __init__(self, pipe: DiffusionPipeline, family: Family, preset: presets.Preset, model: str):
        self.pipe = pipe
        self.family = family
        self.preset = preset
        self.model = model
        self.image_to_video = family.pipelines[type(pipe).__name__]
        self.experts = experts(pipe, family)
        depths = {name: len(family.blocks.blocks(transformer)) for name, transformer in self.experts}
        if len(set(depths.values())) > 1:
            raise ValueError(f"model: its experts differ in depth ({depths}); one block index cannot name both")
        self.depth = depths[self.experts[0][0]]
        # A model with factorized attention: the depth of its temporal layers (None: one kind of layer).
        self.temporal_depth = len(family.temporal.blocks(self.experts[0][1])) if family.temporal else None
        if family.guider:
            check_guider(getattr(pipe, family.guider))
        if family.decode_one_at_a_time:
            pipe.vae.enable_slicing()
        # Fast tokenizers raise 'Already borrowed' when two threads encode at once.
        self._encode_lock = threading.Lock()
        self._autoencoder_lock = threading.Lock()
        for _, transformer in self.experts:
            if family.prepare_transformer is not None:
                family.prepare_transformer(transformer)
            for kind, spec in family.layer_kinds.items():
                install(transformer, spec, kind)
            if family.stages is not None:
                install_stages(transformer, family.stages, family.layer_kinds)
            if family.step_cache:
                cache.install(transformer, family.blocks)  # after the perturbation's hooks: outside them

    @classmethod
    def load(cls, model: str, device=None, dtype=None, *, pipeline: str | None = None, offload: bool = False,
             vae_tiling: bool = False, fp8: bool = False) -> "Backend":
        """model: a preset key, a hub id, or a local diffusers pipeline folder (one a judged world's trainer wrote
        gets that world's preset: `presets.find`).

        pipeline: a diffusers pipeline class name to load the weights with instead of the one the model names
        (e.g. "LTXImageToVideoPipeline" for LTX-Video text-to-video weights). fp8: keep the transformers' weights
        in float8 (half of bf16), each layer cast up to dtype as it runs; close to, not equal to, dtype weights.
        """
        families.check_presets(presets.all_presets())
        device, dtype = _default_device_dtype(device, dtype)
        preset = presets.find(model)
        if preset is not None:
            source, class_name = _preset_source(preset), preset.pipeline
        else:
            source = model
            try:
                class_name = DiffusionPipeline.load_config(model)["_class_name"]
            except Exception as error:
                raise ValueError(
                    f"model: {model!r} is neither a preset ({', '.join(presets.all_presets())}) nor a loadable "
                    f"diffusers pipeline folder or hub id ({error})"
                ) from None
        class_name = pipeline or class_name
        family = families.for_pipeline(class_name)
        preset = preset or presets.for_pipeline(class_name)
        pipe = pipeline_class(class_name).from_pretrained(source, dtype=dtype)
        if fp8:
            for _, transformer in experts(pipe, family):
                transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
        if offload and device.type == "cuda":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        if vae_tiling and hasattr(pipe.vae, "enable_tiling"):
            pipe.vae.enable_tiling()
        return cls(pipe, family, preset, model)

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    @property
    def dtype(self) -> torch.dtype:
        return self.experts[0][1].dtype

    # -- requests ---------------------------------------------------------------------------------
    def check(self, prompt, guidances: Sequence[Guidance], *, panels_per_run: int | None = None, negative_prompt="",
              image=None, seed=0, steps=None, num_frames=None, height=None, width=None, cache=0.0) -> Request:
        """Validate everything and fill defaults from the preset; raises ValueError naming the field."""
        prompt = "" if prompt is None and not self.family.takes_prompt else prompt
        negative_prompt = "" if negative_prompt is None else negative_prompt
        for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            problem = text_problem(text, required=name == "prompt" and self.family.takes_prompt)
            if problem:
                raise ValueError(f"{name} {problem}")
            if text.strip() and not self.family.takes_prompt:
                raise ValueError(f"{name} is not accepted: this model makes video from an image alone; leave it empty")
        for g in guidances:
            if not isinstance(g, Guidance):
                raise ValueError(f"guidance must be a stg.Guidance, got {type(g).__name__}")
            g.check_depth(self.depth)
            self._check_temporal(g)
            self._check_extras(g)
        for name in self.family.call_settings:
            if len({getattr(g, name) for g in guidances}) > 1:
                raise ValueError(f"{name} must be the same in every panel: it conditions the whole run")
        if self.image_to_video and image is None:
            raise ValueError("image is required: this model makes video from an image")
        if not self.image_to_video and image is not None:
            raise ValueError("image is not accepted: this model makes video from text only")
        if panels_per_run is not None and (isinstance(panels_per_run, bool) or not isinstance(panels_per_run, int)
                                           or panels_per_run < 1):
            raise ValueError(f"panels_per_run must be a whole number of at least 1, got {panels_per_run!r}")
        seed = _check_int("seed", seed, 0, MAX_SEED)
        low, high = CACHE_THRESHOLDS
        cache = 0.0 if cache is None else cache  # left out: off
        if (isinstance(cache, bool) or not isinstance(cache, (int, float, np.integer, np.floating))
                or not math.isfinite(cache) or not low <= cache <= high):
            raise ValueError(f"cache must be a finite number in [{low:g}, {high:g}], got {cache!r}")
        if cache > 0 and not self.family.step_cache:
            raise ValueError(f"cache must be 0 on {self.family.name}: its spatial and temporal layers interleave, "
                             "so no stack of blocks can be skipped as one")
        given = dict(steps=steps, num_frames=num_frames, height=height, width=width)
        sizes = {name: _check_int(name, self.preset.defaults[name] if value is None else value,
                                  *self.preset.bounds(name)) for name, value in given.items()}
        return Request(prompt, negative_prompt, image, seed, **sizes, panels=tuple(guidances),
                       panels_per_run=panels_per_run, cache=float(cache))

    @property
    def missing_extras(self) -> dict[str, str]:
        """The guidance settings beyond CFG and STG (guidance.EXTRAS) this model has nothing for, each with why."""
        sound = "" if self.family.makes_sound else "this model makes no sound"
        why = {
            "cfg_scale_2": "" if len(self.experts) > 1 else "this model has one expert",
            "modality_scale": "" if self.family.modality else "this model has no modality guidance",
            "audio_cfg_scale": sound, "audio_stg_scale": sound, "audio_modality_scale": sound, "audio_rescale": sound,
            "min_guidance_scale": "" if self.family.frame_axis is not None else
            "this model has one CFG scale for all frames",
            **{name: "" if name in self.family.call_settings else "this model takes no such setting"
               for name in ("motion_bucket_id", "noise_aug_strength", "decode_chunk_size")},
        }
        return {name: reason for name, reason in why.items() if reason}

    def _check_temporal(self, g: Guidance) -> None:
        """The temporal pass only on a model with factorized attention, on its temporal layers."""
        if self.temporal_depth is None:
            if g.temporal_stg_scale > 0:
                raise ValueError("temporal_stg_scale: this model's attention is not factorized (one kind of layer "
                                 "attends over space and time at once); leave it at 0")
            return
        g.check_depth(self.temporal_depth, "temporal_stg_blocks")

    def _check_extras(self, g: Guidance) -> None:
        """Settings beyond CFG and STG only where the model has what they act on."""
        for name in g.extras():
            if name in self.missing_extras:
                raise ValueError(f"{name}: {self.missing_extras[name]}; leave it at its default")

    def prepare(self, prompt: str, guidances: Sequence[Guidance], *, callback: Callable[[int, int], None] | None = None,
                share_prefix: bool = True, max_rows: int | None = None, **options):
        """The stock pipeline wired for these panels, and the arguments to call it with.

        One latent row per panel, all from the same seed; the pipeline's own guidance is off and a `GuidedDenoiser`
        stands in for each of its transformers. share_prefix=False and max_rows=1 give the plain computation (each
        pass its own forward). Returns (pipeline, kwargs, request); call `pipeline(**kwargs)`.
        """
        request = self.check(prompt, guidances, **options)
        return (*self._wired(request, request.panels, callback, share_prefix, max_rows), request)

    def _wired(self, request: Request, panels: Sequence[Guidance], callback, share_prefix: bool, max_rows,
               cache_rows: frozenset[str] | None = None):
        """The stock pipeline with its own guidance off and a `GuidedDenoiser` in place of each of its transformers,
        rebuilt with every setting the loaded one has; and its call arguments. cache_rows: the row kinds the step
        cache may reuse (None: all)."""
        pipe, family = self.pipe, self.family
        with self._encode_lock, torch.no_grad():
            positive, negative = family.encode(pipe, request.prompt, request.negative_prompt)
        progress = Progress(request.steps, callback)
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        components = {**pipe.components, "scheduler": scheduler}
        components.update({name: OneRequestAtATime(module, self._autoencoder_lock)  # vae, and LTX-2's audio_vae
                           for name, module in components.items() if name.endswith("vae")})
        for expert, (name, transformer) in enumerate(self.experts):
            step_cache = StepCache(request.cache, cache_rows) if request.cache > 0 else None
            components[name] = GuidedDenoiser(transformer, family, panels, negative, progress, expert=expert,
                                              scheduler=scheduler, share_prefix=share_prefix, max_rows=max_rows,
                                              cache=step_cache)
        if family.guider:  # a guider keeps per-call state: each request gets its own, switched off
            components[family.guider] = getattr(pipe, family.guider).new(enabled=False)
        request_pipe = rebuild(pipe, components)

        kwargs = {k: torch.cat([v] * len(panels)) for k, v in positive.items()}
        # The denoiser guides (and sets the scale of CFG-distilled models per row): the pipeline must not.
        kwargs.update(family.guidance_off)
        size = dict(height=request.height, width=request.width)
        if self.image_to_video:
            kwargs.update(family.image_arguments(pipe, request.image, len(panels)))
        kwargs.update({name: getattr(panels[0], name) for name in family.call_settings
                       if getattr(panels[0], name) is not None})
        if family.fps_argument:
            kwargs[family.fps_argument] = self.preset.fps
        if family.sized_by is not None and "height" not in inspect.signature(type(pipe).__call__).parameters:
            for name, value in family.sized_by(request_pipe, **size).items():
                setattr(request_pipe, name, value)
            size = {}
        kwargs.update(
            num_inference_steps=request.steps,
            **({"sigmas": list(self.preset.sigmas)} if self.preset.sigmas else {}),
            num_frames=request.num_frames,
            generator=[torch.Generator("cpu").manual_seed(request.seed) for _ in panels],
            output_type="np",
            **size,
        )
        return request_pipe, kwargs

    def render(self, request: Request, callback: Callable[[int, int], None] | None = None, *,
               share_prefix: bool = True, max_rows: int | None = None,
               cache_rows: frozenset[str] | None = None) -> list[Video]:
        """Denoise a checked request run by run; callback(step, total) counts over all runs. Videos in panel order.
        cache_rows: the row kinds the step cache may reuse (None: all; measurements cache some kinds alone)."""
        videos = []
        for index, panels in enumerate(request.runs):
            def progress(step, steps, _done=index * request.steps):
                if callback is not None:
                    callback(_done + step, request.total_steps)

            pipe, kwargs = self._wired(request, panels, progress, share_prefix, max_rows, cache_rows)
            output = pipe(**kwargs)
            denoisers = [getattr(pipe, name) for name, _ in self.experts]
            frames = np.asarray(output.frames)
            audio = output.audio.float().cpu().numpy() if self.family.makes_sound else [None] * len(panels)
            videos += [Video(frames=(np.clip(frames[j], 0, 1) * 255).round().astype(np.uint8), fps=self.preset.fps,
                             seed=request.seed, settings=self.settings(request, g, _forwards(denoisers, j)),
                             audio=audio[j],
                             sample_rate=self.sample_rate) for j, g in enumerate(panels)]
        return videos

    @property
    def sample_rate(self) -> int | None:
        """The sound's sample rate, for models that make sound."""
        if not self.family.makes_sound:
            return None
        component, key = self.family.sample_rate
        return int(getattr(self.pipe, component).config[key])

    def run(self, prompt: str, guidances: Sequence[Guidance], *, panels_per_run: int | None = None,
            callback: Callable[[int, int], None] | None = None, share_prefix: bool = True,
            max_rows: int | None = None, **options) -> list[Video]:
        """One panel per guidance, all from the same initial noise, in runs of at most panels_per_run (None: one)."""
        request = self.check(prompt, guidances, panels_per_run=panels_per_run, **options)
        return self.render(request, callback, share_prefix=share_prefix, max_rows=max_rows)

    def generate(self, prompt: str, guidance: Guidance, **options) -> Video:
        return self.run(prompt, [guidance], **options)[0]

    def compare(self, prompt: str, left: Guidance, right: Guidance, **options) -> tuple[Video, Video]:
        left_video, right_video = self.run(prompt, [left, right], **options)
        return left_video, right_video

    def sweep(self, prompt: str, reference: Guidance, candidate: Guidance, blocks: Sequence[int] | None = None, *,
              panels_per_run: int = PANELS_PER_RUN, layers: str = "spatial", **options) -> tuple[Video, list[Video]]:
        """The reference panel and one panel per block (candidate's settings, that block alone), same seed.

        Panels go through in runs of at most panels_per_run (each a batched run from the same noise), so
        memory stays bounded however many blocks are tried; callback(step, total) counts over all runs. layers: which
        kind of layer the blocks are, on a model with factorized attention (`sweep_panels`).
        """
        videos = self.run(prompt, self.sweep_panels(reference, candidate, blocks, layers),
                          panels_per_run=panels_per_run, **options)
        return videos[0], videos[1:]

    def sweep_panels(self, reference: Guidance, candidate: Guidance, blocks: Sequence[int] | None = None,
                     layers: str | None = "spatial") -> list[Guidance]:
        """A sweep's panels: the reference, then the candidate with each block alone (None: `candidate_blocks()`).

        layers: on a model with factorized attention, whether each number is a spatial layer (the temporal pass off),
        a temporal one (the spatial pass off) or both; elsewhere only "spatial", the model's blocks.
        """
        layers = layers or "spatial"
        if layers not in SWEEP_LAYERS or layers != "spatial" and self.temporal_depth is None:
            allowed = list(SWEEP_LAYERS) if self.temporal_depth is not None else ["spatial"]
            raise ValueError(f"sweep_layers must be one of {', '.join(allowed)} for this model, got {layers!r}")
        blocks = self.candidate_blocks() if blocks is None else list(blocks)
        if not blocks:
            raise ValueError("candidate_blocks must name at least one block")
        for kind, scale in (("spatial", "stg_scale"), ("temporal", "temporal_stg_scale")):
            if layers in (kind, "both") and not getattr(candidate, scale):
                raise ValueError(f"{scale} must be above 0 for a block sweep: at 0 every candidate is the CFG video")
        spatial, temporal = layers in ("spatial", "both"), layers in ("temporal", "both")
        candidates = [replace(candidate, stg_blocks=(block,) if spatial else (),
                              stg_scale=candidate.stg_scale * spatial, temporal_stg_blocks=(block,) if temporal else (),
                              temporal_stg_scale=candidate.temporal_stg_scale * temporal) for block in blocks]
        for name, depth in (("stg_blocks", self.depth), ("temporal_stg_blocks", self.temporal_depth or self.depth)):
            replace(candidate, **{name: blocks}).check_depth(depth, name)
        return [reference] + candidates

    def candidate_blocks(self, count: int = SWEEP_CANDIDATES) -> list[int]:
        """About `count` blocks spread evenly over the depth, first and last included, and the preset's own
        STG blocks among them (LTX-2's 29 between 27 and 34)."""
        count = min(count, self.depth)
        spread = {round(i * (self.depth - 1) / max(count - 1, 1)) for i in range(count)}
        return sorted(spread | {b for b in self.preset.defaults.get("stg_blocks", ()) if 0 <= b < self.depth})

    def prompt_tokens(self, prompt: str) -> tuple[int, int | None]:
        """The tokens the pipeline's tokenizer makes of a prompt, and how many of them its text encoder reads (None
        where no limit is known)."""
        limit, tokenizer = families.text_limit(self.pipe), getattr(self.pipe, "tokenizer", None)
        if limit is None or tokenizer is None:
            return 0, None
        return len(tokenizer(prompt).input_ids), limit

    def passes_per_step(self, request: Request, share_prefix: bool = True) -> float:
        """Transformer passes a step of this request costs, over all its runs (what its GPU time grows with)."""
        return passes_per_step(request.panels, request.steps, self.depth, self.family.has_cfg_pass,
                               share_prefix)

    def settings(self, request: Request, guidance: Guidance, forwards: dict | None = None) -> dict:
        """What reproduces a panel; forwards: per row kind, the transformer forwards it ran in full and reused."""
        from . import __version__

        return {
            "model": self.model,
            "family": self.family.name,
            "pipeline": type(self.pipe).__name__,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "steps": request.steps,
            "num_frames": request.num_frames,
            "height": request.height,
            "width": request.width,
            "fps": self.preset.fps,
            "guidance": guidance.as_dict(),
            "cache": request.cache,
            **({"forwards": forwards} if forwards is not None else {}),
            **({"sample_rate": self.sample_rate} if self.family.makes_sound else {}),
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "versions": {"stg_studio": __version__, "diffusers": diffusers.__version__, "torch": torch.__version__},
        }


def _forwards(denoisers: Sequence[GuidedDenoiser], panel: int) -> dict:
    """One panel's forwards per row kind over all its transformers: {kind: {"ran": n, "reused": m}}."""
    counts = {kind: {"ran": 0, "reused": 0} for kind in KINDS}
    for denoiser in denoisers:
        for (row, reused), n in denoiser.forwards.items():
            if row.panel == panel:
                counts[row.kind]["reused" if reused else "ran"] += n
    return {kind: count for kind, count in counts.items() if count["ran"] or count["reused"]}


def _preset_source(preset: presets.Preset) -> str:
    """Where a preset's weights are: its hub id or folder, or the offline pipeline built on first use."""
    if preset.tiny is None:
        return preset.source
    from . import tiny  # builds random-weight models; only the offline presets need it

    return str(tiny.cached(preset.tiny))
