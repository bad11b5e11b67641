"""Models trained on a world whose every prompt has a ground truth, by model key: where its judge and its prompts are.

A world is three modules: a judge (`ATTRIBUTES`, the parts of a prompt it reads back; `QUALITY`, its quality figures by
name, each a `metrics.Figure`; `judge(frames, prompt)`, a dict with each quality figure and `<attribute>_ok` and
`all_ok`), its scenes (`random_scene(rng)`, whose `.prompt` is a prompt of the grammar), and its trainer, whose command
opens the `training.json` record it writes into a model's folder: such a folder is judged in its world too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np

WORLDS = {"shapes": ("stg.shapes.judge", "stg.shapes.scenes", "stg.shapes.train"),
          "lab": ("stg.lab.judge", "stg.lab.world", "stg.lab.train")}


@dataclass(frozen=True)
class World:
    """A model's world: what its judge reads and measures, and a source of prompts."""

    judge_module: object
    scenes_module: object

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.judge_module.ATTRIBUTES)

    @property
    def quality(self) -> dict:
        return dict(self.judge_module.QUALITY)

    def judge(self, frames: np.ndarray, prompt: str) -> dict:
        return self.judge_module.judge(frames, prompt)

    def prompt(self, rng: np.random.Generator) -> str:
        return self.scenes_module.random_scene(rng).prompt

    @property
    def diversity_figures(self) -> tuple[str, ...]:
        """The figures `diversity` returns that compare with the training data (ratios; 1: as varied)."""
        return tuple(getattr(self.judge_module, "DIVERSITY", ()))

    def diversity(self, videos: list[np.ndarray], prompt: str) -> dict:
        """How varied several seeds' videos of one prompt are in what the prompt leaves free."""
        return self.judge_module.diversity(videos, prompt)


def trained_world(folder: str) -> str | None:
    """The world whose trainer wrote this pipeline folder (the first command of its `training.json`), or None: a
    model still in training is judged as the shipped one is."""
    try:
        first = json.loads((Path(folder).expanduser() / "training.json").read_text())["commands"][0]["command"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return next((key for key, (*_, trainer) in WORLDS.items() if first.startswith(f"python -m {trainer} ")), None)


def key(model: str) -> str | None:
    """The world of a model key or of a folder one of the worlds' trainers wrote; None for a model without one."""
    return model if model in WORLDS else trained_world(model)


def world(model: str) -> World:
    """The world of a model key or trained folder; a clear error for a model without one."""
    name = key(model)
    if name is None:
        raise ValueError(f"--model: {model!r} has no ground truth to judge against; judged models: {', '.join(WORLDS)} "
                         "and the folders their trainers write")
    judge, scenes, _ = WORLDS[name]
    return World(import_module(judge), import_module(scenes))


def has_world(model: str) -> bool:
    return key(model) is not None
