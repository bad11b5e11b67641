"""Reads presets/*.json: per-family defaults, limits, example prompts, and the named checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import import_module
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESET_DIR = ROOT / "presets"
SIZES = ("steps", "num_frames", "height", "width")


@dataclass(frozen=True)
class Preset:
    """One named checkpoint with its family's settings (model entries override family defaults and limits)."""

    key: str
    family: str
    title: str
    pipeline: str
    source: str | None
    tiny: str | None  # the name of an offline pipeline built by stg.tiny, in place of a source
    fps: int
    defaults: dict
    limits: dict
    examples: list[str] = field(default_factory=list)
    notice: str = ""  # what a person should know about this model's videos before reading anything into them
    look_for: str = ""  # what STG does to this model's videos, in words that hold for it ("": the paper's claim)
    figures: tuple[str, ...] = ("video",)  # the figure sets its videos are measured with (stg.metrics)
    bundled: bool = False  # its weights are a folder of this repository (source is that folder's path)
    guide: str | None = None  # "module:attribute" of what the model knows of prompts: `.hint`, `.note(prompt)`
    sigmas: tuple[float, ...] = ()  # a distilled model's own noise levels, one per step (its steps are fixed to them)
    id_source: str = ""  # where its hub id was confirmed: the id, then the document and revision that load it

    def prompt_hint(self) -> str:
        """Which prompts the model knows, for the prompt box ("" for a model that takes any text)."""
        return _attribute(self.guide).hint if self.guide else ""

    def prompt_note(self, prompt: str) -> str:
        """A short note on a prompt the model may not follow, such as one with words it never saw ("" if none)."""
        return _attribute(self.guide).note(prompt) if self.guide else ""

    def default(self, key: str, sweep: bool = False):
        """The default of one setting: a key of `defaults`, or "fps"; "window.0" is the first of a pair; None where
        the preset does not name it. A sweep's sizes are the explorer's reduced ones."""
        name, _, index = key.partition(".")
        value = {**self.defaults, "fps": self.fps, **(self.explorer_size if sweep else {})}.get(name)
        return value[int(index)] if index and value is not None else value

    def bounds(self, size: str) -> tuple[int, int, int, int]:
        """(low, high, step, offset) of one of SIZES: a value is in [low, high] with (value - offset) % step == 0."""
        rule = self.limits[size]
        if size == "num_frames":
            return rule["min"], rule["max"], rule["step"], 1
        return rule["min"], rule["max"], rule.get("multiple", 1), 0

    def scaled(self, steps: float, frames: float) -> dict:
        """The preset's steps and frames times these shares and half its resolution, kept within its limits."""
        d, lim = self.defaults, self.limits
        step = lim["num_frames"]["step"]
        size = {name: max(lim[name]["min"], d[name] // 2 // lim[name]["multiple"] * lim[name]["multiple"])
                for name in ("height", "width")}
        frame_count = (int(d["num_frames"] * frames) - 1) // step * step + 1  # of the form step * n + 1
        return dict(steps=max(lim["steps"]["min"], int(d["steps"] * steps)),
                    num_frames=max(lim["num_frames"]["min"], frame_count), **size)

    @property
    def explorer_size(self) -> dict:
        """A block sweep's size when none is given: half the steps, about half the frames and the resolution."""
        return self.scaled(steps=0.5, frames=0.5)


@cache
def all_presets() -> dict[str, Preset]:
    presets = {}
    for path in sorted(PRESET_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        for key, model in data["models"].items():
            presets[key] = Preset(
                key=key,
                family=data["family"],
                title=model["title"],
                pipeline=model["pipeline"],
                source=str(ROOT / model["folder"]) if "folder" in model else model.get("source"),
                tiny=model.get("tiny"),
                fps=model.get("fps", data["fps"]),
                defaults={**data["defaults"], **model.get("defaults", {})},
                limits={**data["limits"], **model.get("limits", {})},
                examples=list(data["examples"]),
                notice=model.get("notice", ""),
                look_for=model.get("look_for", data.get("look_for", "")),
                figures=tuple(model.get("figures", data.get("figures", ("video",)))),
                bundled="folder" in model,
                guide=model.get("guide"),
                sigmas=tuple(model.get("sigmas", ())),
                id_source=model.get("id_source", ""),
            )
    return presets


def get(key: str) -> Preset | None:
    return all_presets().get(key)


def find(model: str) -> Preset | None:
    """The preset of a key, or of a folder a judged world's trainer wrote: that world's preset with the folder's
    weights, so a model in training loads at its world's sizes and is judged as the shipped one is."""
    from . import judged

    world = None if model in all_presets() else judged.trained_world(model)
    if world is None:
        return get(model)
    preset = all_presets()[world]
    measured = f"(measured on the shipped `{world}` model, not on these weights) " if preset.look_for else ""
    return replace(preset, source=str(Path(model).expanduser().resolve()), look_for=measured + preset.look_for)


def for_pipeline(pipeline: str) -> Preset | None:
    """The first full-size preset using this pipeline class: defaults for a model given by folder or hub id."""
    for preset in all_presets().values():
        if preset.pipeline == pipeline and preset.tiny is None and not preset.bundled:
            return preset
    return None


def hub_id_table() -> str:
    """The README's list of the hub ids with where each was confirmed, for every preset that downloads one."""
    rows = ["| key | hub id (a folder: converted here) | where it was confirmed |", "|---|---|---|"]
    for preset in all_presets().values():
        if preset.id_source:
            source = preset.id_source.removeprefix(f"{preset.source}:").strip()
            rows.append(f"| `{preset.key}` | `{preset.source}` | {source} |")
    return "\n".join(rows)


def _attribute(spec: str):
    module, _, name = spec.partition(":")
    return getattr(import_module(module), name)
