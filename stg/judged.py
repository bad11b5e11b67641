"""Models trained on a world whose every prompt has a ground truth, by model key: where its judge and its prompts are.

A world is two modules: a judge (`ATTRIBUTES`, the parts of a prompt it reads back; `QUALITY`, its quality figures by
name, each a `metrics.Figure`; `judge(frames, prompt)`, a dict with each quality figure and `<attribute>_ok` and
`all_ok`) and its scenes (`random_scene(rng)`, whose `.prompt` is a prompt of the grammar).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

import numpy as np

WORLDS = {"shapes": ("stg.shapes.judge", "stg.shapes.scenes"), "lab": ("stg.lab.judge", "stg.lab.world")}


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


def world(model: str) -> World:
    """The world of a model key; a clear error for a model without one."""
    if model not in WORLDS:
        raise ValueError(f"--model: {model!r} has no ground truth to judge against; judged models: {', '.join(WORLDS)}")
    judge, scenes = (import_module(name) for name in WORLDS[model])
    return World(judge, scenes)


def has_world(model: str) -> bool:
    return model in WORLDS
