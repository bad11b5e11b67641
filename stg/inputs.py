"""The settings of a request, in one table, and how every surface reads them.

SETTINGS names each setting once: its API name (the CLI flag is the same with dashes), the part of the request it
belongs to, its type and range, where its default comes from, its help, and the engine's name for it. The app
builds its controls, their guards and its endpoints' parameters from it, the command line its flags and help,
and the README its parameter list (`python -m stg.readme` rewrites it). `task` turns the values of one request
into the engine's checked request, refusing bad input with a message that names the setting.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .guidance import (CFG_SCALES, EXTRAS, MODALITY_SCALES, MODES, NOISE_AUG, STG_SCALES, SWEEP_LAYERS, WHOLE_EXTRAS,
                       Guidance)
from .limits import CACHE_THRESHOLDS, PANELS_PER_RUN
from .presets import SIZES, Preset
from .values import Blocks, Choice, Extra, InputError, Kind, Number, Picture, Seed, Size, Text, shown

if TYPE_CHECKING:  # the engine loads torch and diffusers: the command line's help reads this table without them
    from .backend import Backend, Request

MAX_CANDIDATES = 16  # blocks one sweep may try

# Where a setting acts: the request (both panels), the files, the CFG panel, the CFG + STG panel, a block sweep,
# and every panel's guidance where the model has more of it than CFG and STG (MODEL).
REQUEST, OUTPUT, CFG, STG, SWEEP, MODEL = "request", "output", "cfg", "stg", "sweep", "model"
PANELS = {CFG: "CFG panel", STG: "CFG + STG panel", MODEL: "every panel"}


@dataclass(frozen=True)
class Model:
    """What reading a request needs to know of the model: its preset and, once it is loaded, its depth and
    whether it makes video from an image."""

    preset: Preset
    depth: int | None = None
    image_to_video: bool | None = None

    @classmethod
    def of(cls, backend: Backend) -> "Model":
        return cls(backend.preset, backend.depth, backend.image_to_video)

    @classmethod
    def before_loading(cls, preset: Preset) -> "Model":
        """A preset's model before its weights load: whether it takes an image is its pipeline's family's."""
        from .families import for_pipeline

        return cls(preset, image_to_video=for_pipeline(preset.pipeline).pipelines[preset.pipeline])


# -- the table -------------------------------------------------------------------------------------
ALL = ("compare", "generate", "sweep")
PAIR = ("compare", "sweep")  # the commands with a CFG panel beside the CFG + STG one


@dataclass(frozen=True)
class Setting:
    """One setting of a request, as every surface names, reads, checks and explains it."""

    name: str  # the API's parameter; the command line's flag is --name with dashes
    group: str  # where it acts: REQUEST, OUTPUT, CFG, STG or SWEEP
    kind: Kind  # its type: Text, Picture, Size, Seed, Number, Choice or Blocks (stg/values.py)
    help: str  # one line, the same on the page, in the API, on the command line and in the README
    preset: str | None = None  # None means this key of the preset's defaults ("window.0": the first of a pair)
    follows: str | None = None  # ...or, before the preset's, this other setting's value where the command has it
    default: Any = None  # the value when left out, where that is not None (the API's and the command line's)
    field: str | None = None  # the engine's name for it, as its messages say it, where that is not `name`
    label: str = ""  # on the page
    commands: tuple[str, ...] = ALL  # the endpoints and commands that take it
    metavar: str | None = None  # on the command line (block numbers: an example)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def engine_name(self) -> str:
        return self.field or self.name

    @property
    def described(self) -> str:
        """Its help, with the panel it belongs to where it belongs to one."""
        return f"{PANELS[self.group]}: {self.help}" if self.group in PANELS else self.help

    def read(self, value, model: Model, command: str, values: dict):
        """The value for the engine; None (or what the type counts as empty) means the followed setting's value,
        else the preset's (a sweep's sizes: the explorer's reduced ones), else what the type makes of it."""
        if self.kind.empty(value) and self.follows and values.get(self.follows) is not None:
            value = values[self.follows]
        elif self.kind.empty(value) and self.preset:
            value = model.preset.default(self.preset, sweep=command == "sweep")
        return self.kind.read(value, self, model)

    def rule(self, preset: Preset | None = None) -> str:
        return self.kind.rule(self, preset)

    def default_text(self, preset: Preset | None = None, command: str = "compare", spell=lambda s: s.name) -> str:
        """The default in words: the followed setting (as `spell` names it), the preset's value (or "preset"),
        the fixed default, or what None means."""
        if self.follows:
            return spell(BY_NAME[self.follows])
        if self.preset:
            return shown(preset.default(self.preset, command == "sweep")) if preset else "preset"
        return shown(self.default) if self.default is not None else self.kind.none or "none"


FRACTION = Number(0, 1, 0.05, engine=True)

SETTINGS: tuple[Setting, ...] = (
    Setting("prompt", REQUEST, Text(), "what the video shows", label="Prompt"),
    Setting("negative_prompt", REQUEST, Text(), "what the video should not show (empty: nothing)",
            "negative_prompt", label="Negative prompt"),
    Setting("image", REQUEST, Picture(), "first frame, for image-to-video models only", label="First frame"),
    Setting("seed", REQUEST, Seed(), "seed of the initial noise, the same for every panel", default=0, label="Seed"),
    Setting("steps", REQUEST, Size(), "denoising steps", "steps", label="Steps"),
    Setting("num_frames", REQUEST, Size(), "frames per video", "num_frames", label="Frames"),
    Setting("height", REQUEST, Size(), "video height in pixels", "height", label="Height", metavar="PX"),
    Setting("width", REQUEST, Size(), "video width in pixels", "width", label="Width", metavar="PX"),
    Setting("cache", REQUEST, Number(*CACHE_THRESHOLDS, 0.01, engine=True),
            "step cache threshold, the same for every panel: a row whose first block changed less than this since it "
            "last ran in full reuses the rest of the model (First-Block Cache); faster, not exact; 0: off",
            default=0.0, label="Step cache threshold (0: off)", metavar="T"),
    Setting("fps", OUTPUT, Number(1, 60, 1), "frames per second of the files", "fps", label="Frames per second",
            metavar="FPS"),
    Setting("cfg_scale", CFG, Number(*CFG_SCALES, 0.1, engine=True), "guidance scale w; 1 turns CFG off",
            "cfg_scale", label="Guidance scale w", commands=PAIR, metavar="W"),
    Setting("cfg_rescale", CFG, FRACTION, "rescale toward std(eps_c); 0: off", "cfg_rescale", field="rescale",
            label="Rescale (0: off)", commands=PAIR, metavar="R"),
    Setting("stg_cfg_scale", STG, Number(*CFG_SCALES, 0.1, engine=True), "guidance scale w; 1 turns CFG off",
            "cfg_scale", follows="cfg_scale", field="cfg_scale", label="Guidance scale w", metavar="W"),
    Setting("stg_scale", STG, Number(*STG_SCALES, 0.05, engine=True),
            "STG scale s; 0 turns STG off (the rescale still applies)", "stg_scale", label="STG scale s", metavar="S"),
    Setting("stg_mode", STG, Choice(MODES), "; ".join(f"{k}: {v}" for k, v in MODES.items()), "stg_mode",
            label="Mode"),
    Setting("stg_blocks", STG, Blocks(), "blocks to perturb", "stg_blocks", label="Blocks",
            commands=("compare", "generate"), metavar='"14, 19"'),
    Setting("candidate_blocks", SWEEP, Blocks(MAX_CANDIDATES, "about eight spread over the model's depth"),
            "blocks to try, one CFG + STG video each", field="stg_blocks", label="Candidate blocks, one video each",
            commands=("sweep",), metavar='"0, 4, 8"'),
    Setting("rescale", STG, FRACTION, "rescale toward std(eps_c); 0: off, the official code uses 0.7",
            "rescale", label="Rescale (0: off)", metavar="R"),
    # Factorized attention (SVD): the temporal pass, `s_t (eps_c - eps_t)`; the two settings above are then the spatial
    # pass's. A model whose layers attend over space and time at once refuses a temporal scale above 0.
    Setting("temporal_stg_scale", STG, Number(*STG_SCALES, 0.05, engine=True),
            "temporal STG scale s_t, for models with separate spatial and temporal attention (SVD): a second perturbed "
            "pass with the temporal layers perturbed; 0: off", "temporal_stg_scale", label="Temporal STG scale s_t",
            metavar="S"),
    Setting("temporal_stg_blocks", STG, Blocks(), "temporal layers to perturb (SVD: numbered down, mid, up; 7 is the "
            "first up-block layer, the official u0)", "temporal_stg_blocks", label="Temporal layers",
            commands=("compare", "generate"), metavar='"7"'),
    Setting("sweep_layers", SWEEP, Choice(SWEEP_LAYERS), "which kind of layer each candidate perturbs: "
            + "; ".join(f"{k}: {v}" for k, v in SWEEP_LAYERS.items()), default="spatial", label="Layers to sweep",
            commands=("sweep",)),
    Setting("stg_window_start", STG, FRACTION, "fraction of the steps where STG starts", "window.0",
            field="window start", label="STG from (fraction of steps)", metavar="F"),
    Setting("stg_window_end", STG, FRACTION, "fraction of the steps where STG ends", "window.1", field="window end",
            label="STG until", metavar="F"),
    # The model's own guidance, in every panel; its preset sets what the model's authors use (LTX-2: m 3, sound w 7).
    Setting("cfg_scale_2", MODEL, Extra(*CFG_SCALES, 0.1, engine=True, none="w, for both experts"),
            EXTRAS["cfg_scale_2"], "cfg_scale_2", label="Second expert's w", metavar="W"),
    Setting("modality_scale", MODEL, Extra(*MODALITY_SCALES, 0.1, engine=True, none="1, off"), EXTRAS["modality_scale"],
            "modality_scale", label="Modality guidance m", metavar="M"),
    Setting("audio_cfg_scale", MODEL, Extra(*CFG_SCALES, 0.1, engine=True, none="the video's w"),
            EXTRAS["audio_cfg_scale"], "audio_cfg_scale", label="Sound: w", metavar="W"),
    Setting("audio_stg_scale", MODEL, Extra(*STG_SCALES, 0.05, engine=True, none="the video's s"),
            EXTRAS["audio_stg_scale"], "audio_stg_scale", label="Sound: STG scale s", metavar="S"),
    Setting("audio_modality_scale", MODEL, Extra(*MODALITY_SCALES, 0.1, engine=True, none="the video's m"),
            EXTRAS["audio_modality_scale"], "audio_modality_scale", label="Sound: modality guidance m", metavar="M"),
    Setting("audio_rescale", MODEL, Extra(0, 1, 0.05, engine=True, none="the video's rescale"),
            EXTRAS["audio_rescale"], "audio_rescale", label="Sound: rescale", metavar="R"),
    # SVD's conditioning (StableVideoDiffusionPipeline's arguments; its preset holds the pipeline's defaults).
    Setting("min_guidance_scale", MODEL, Extra(*CFG_SCALES, 0.1, engine=True, none="w on every frame"),
            EXTRAS["min_guidance_scale"], "min_guidance_scale", label="w of the first frame", metavar="W"),
    Setting("motion_bucket_id", MODEL, Extra(*WHOLE_EXTRAS["motion_bucket_id"], 1, engine=True, none="127", whole=True),
            EXTRAS["motion_bucket_id"], "motion_bucket_id", label="Motion bucket", metavar="N"),
    Setting("noise_aug_strength", MODEL, Extra(*NOISE_AUG, 0.01, engine=True, none="0.02"),
            EXTRAS["noise_aug_strength"], "noise_aug_strength", label="Noise augmentation", metavar="X"),
    Setting("decode_chunk_size", MODEL, Extra(*WHOLE_EXTRAS["decode_chunk_size"], 1, engine=True,
                                              none="every frame at once", whole=True),
            EXTRAS["decode_chunk_size"], "decode_chunk_size", label="Frames decoded at once", metavar="N"),
)
BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Command:
    """What a request asks for: the settings it takes, the panels they make and how those are grouped into runs."""

    name: str
    summary: str
    panels: Callable[[dict, Backend], list[Guidance]]  # {group: its panel, or a sweep's blocks} -> the panels
    panels_per_run: int | None = None

    @property
    def settings(self) -> tuple[Setting, ...]:
        return tuple(s for s in SETTINGS if self.name in s.commands)


COMMANDS = {c.name: c for c in (
    Command("compare", "the same prompt and seed twice, with CFG and with CFG + STG, in one run",
            lambda made, backend: [made[CFG], made[STG]]),
    Command("generate", "one panel with the CFG + STG settings (stg_scale=0 and rescale=0 give the CFG panel's video)",
            lambda made, backend: [made[STG]]),
    Command("sweep", "the CFG video and one CFG + STG video per candidate block, same prompt and seed",
            lambda made, backend: backend.sweep_panels(made[CFG], made[STG], made[SWEEP], made["sweep_layers"]),
            PANELS_PER_RUN),
)}


# -- reading a request -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One request, read and checked: the engine's request, what it asks for, the files' fps and figure sets."""

    command: Command
    request: Request
    fps: float
    figures: tuple[str, ...] = ("video",)


def read(command: Command, values: dict, model: Model) -> dict:
    """Every setting of the command by its API name: defaults filled, text parsed, images loaded, and what needs
    no model checked; the rest the engine checks. Settings the command does not take are ignored."""
    read_values: dict = {}
    for setting in command.settings:
        read_values[setting.name] = setting.read(values.get(setting.name), model, command.name, read_values)
    return read_values


def guidances(command: Command, values: dict, depth: int | None = None) -> dict:
    """The CFG panel and the CFG + STG panel of read values (one group's settings each), and a sweep's blocks."""
    made: dict = {SWEEP: values.get("candidate_blocks"), "sweep_layers": values.get("sweep_layers")}
    every = [s for s in command.settings if s.group == MODEL]
    for group in (CFG, STG):
        settings = [s for s in command.settings if s.group == group]
        if not settings:
            continue
        settings += every
        with renamed(settings):
            # A field left None (no preset names it) keeps the engine's own default.
            fields = {s.engine_name: values[s.name] for s in settings if values[s.name] is not None}
            window = (fields.pop("window start", 0.0), fields.pop("window end", 1.0))
            made[group] = Guidance(**fields, window=window)
            if depth is not None:
                made[group].check_depth(depth)
    return made


def task(backend: Backend, command: Command, values: dict, panels_per_run: int | None = None) -> Task:
    """Read one request's values (by API name; None means the default) and check it, before any work."""
    values = read(command, values, Model.of(backend))
    made = guidances(command, values, backend.depth)
    request_settings = [s for s in command.settings if s.group in (REQUEST, SWEEP)]
    options = {s.name: values[s.name] for s in request_settings if s.group == REQUEST and s.name != "prompt"}
    with renamed(request_settings):
        request = backend.check(values["prompt"], command.panels(made, backend),
                                panels_per_run=panels_per_run or command.panels_per_run, **options)
    return Task(command, request, values["fps"], backend.preset.figures)


@contextmanager
def renamed(settings):
    """The engine's errors, with these settings named as the API names them."""
    try:
        yield
    except InputError:
        raise
    except ValueError as error:
        raise ValueError(rename(str(error), {s.engine_name: s.name for s in settings})) from None


def rename(message: str, names: dict[str, str]) -> str:
    """Names in a message replaced: names with '_' or ' ' anywhere, plain words only where the message starts."""
    for old in sorted(names, key=len, reverse=True):
        pattern = rf"(?<![\w-]){re.escape(old)}(?![\w-])" if re.search(r"[_ ]", old) else rf"^{re.escape(old)}\b"
        message = re.sub(pattern, names[old], message)
    return message


# -- documentation ---------------------------------------------------------------------------------
def reference() -> str:
    """The README's parameter list: one row per setting, for the HTTP API and the command line alike."""
    rows = ["| parameter | flag | endpoints | allowed | default | what it is |", "|---|---|---|---|---|---|"]
    for s in SETTINGS:
        allowed = s.rule()
        default = "required (but for image-only models: SVD)" if s.name == "prompt" else \
            s.default_text(spell=lambda f: f"`{f.name}`")
        if default == "preset":
            default = "the preset's" + (" (a sweep: reduced)" if s.name in SIZES else "")
        endpoints = ", ".join(f"`/{c}`" for c in s.commands)
        rows.append(f"| `{s.name}` | `{s.flag}` | {endpoints} | {allowed} | {default} | {s.described} |")
    return "\n".join(rows)
