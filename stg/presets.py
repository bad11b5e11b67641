"""Reads presets/*.json: per-family defaults, limits, example prompts, and the named checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


@dataclass(frozen=True)
class Preset:
    """One named checkpoint with its family's settings (model entries override family defaults and limits)."""

    key: str
    family: str
    title: str
    pipeline: str
    source: str | None
    tiny: str | None
    fps: int
    defaults: dict
    limits: dict
    examples: list[str] = field(default_factory=list)
    params: str = ""

    @property
    def is_tiny(self) -> bool:
        return self.tiny is not None


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
                source=model.get("source"),
                tiny=model.get("tiny"),
                fps=model.get("fps", data["fps"]),
                defaults={**data["defaults"], **model.get("defaults", {})},
                limits={**data["limits"], **model.get("limits", {})},
                examples=list(data["examples"]),
                params=model.get("params", ""),
            )
    return presets


def get(key: str) -> Preset | None:
    return all_presets().get(key)


def for_pipeline(pipeline: str) -> Preset:
    """The first full-size preset using this pipeline class: defaults for a model given by folder or hub id."""
    for preset in all_presets().values():
        if preset.pipeline == pipeline and not preset.is_tiny:
            return preset
    raise KeyError(pipeline)
