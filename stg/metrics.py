"""Figures that describe a video, for comparing CFG with CFG+STG runs.

Frames are uint8 arrays shaped [frames, height, width, 3]. Motion comes from
OpenCV's optical flow (stg.flow); flicker and sharpness work on BT.601 luma
(0..255), in numpy.

Figures come in sets, named in FIGURE_SETS: every video gets the "video" set
(motion, flicker, sharpness); a model whose preset lists more sets (its
"figures" key) gets theirs too. Each figure's name, unit and meaning are
stated once, next to the code that measures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable, Sequence

import numpy as np

from . import flow

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def motion(frames: np.ndarray) -> float:
    """Mean speed of what moves, in pixels of the input a frame, from OpenCV's optical flow (stg.flow)."""
    return flow.speed(_checked(frames))


def flicker(frames: np.ndarray) -> float:
    """Mean absolute change of mean brightness (0..255) from frame to frame."""
    return _flicker(_luma(frames))


def sharpness(frames: np.ndarray) -> float:
    """Mean over frames of the variance of the Laplacian: higher is crisper."""
    return _sharpness(_luma(frames))


def figures(frames: np.ndarray) -> dict[str, float]:
    """All figures of one video, rounded and JSON-ready."""
    luma = _luma(frames)
    values = {"motion": flow.speed(frames), "flicker": _flicker(luma), "sharpness": _sharpness(luma)}
    return {name: round(float(value), 4) for name, value in values.items()}


@dataclass(frozen=True)
class Figure:
    """One figure: its key in the settings JSON, its unit as shown after a value, and what it measures."""

    name: str
    unit: str = ""
    help: str = ""
    relative: bool = True  # shown with its change against the CFG panel's, in percent
    text: bool = False  # words (what a judge read), not a number: kept out of printed tables and means
    higher_is_better: bool = False  # most figures are distances or spreads: lower is truer

    def number(self, value) -> str:
        """The value as shown under a video: two decimals, none from 100 up; a dash where nothing was measured."""
        if value is None or isinstance(value, str):
            return "–" if value is None else value
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"


@dataclass(frozen=True)
class FigureSet:
    """Figures measured together: their descriptions, and measure(frames, settings) -> {name: value}, where
    settings are the panel's (prompt, guidance, ...), for figures that judge a video against its prompt."""

    figures: tuple[Figure, ...]
    measure: Callable[[np.ndarray, dict], dict[str, float]]


VIDEO = FigureSet(
    (
        Figure("motion", " px", "mean speed of what moves, in pixels a frame (OpenCV's DIS optical flow, over the "
               "pixels whose change the flow explains)"),
        Figure("flicker", "", "mean absolute change of the frame brightness from one frame to the next (0-255; "
               "lower is steadier)"),
        Figure("sharpness", "", "mean variance of the Laplacian of each frame (higher is crisper)",
               higher_is_better=True),
    ),
    lambda frames, settings: figures(frames),
)

# Figure sets by the name presets give them ("module:attribute", imported on first use).
FIGURE_SETS = {"video": f"{__name__}:VIDEO", "shapes": "stg.shapes.judge:FIGURES", "lab": "stg.lab.judge:FIGURES"}


def figure_set(name: str) -> FigureSet:
    if name not in FIGURE_SETS:
        raise ValueError(f"figures: unknown figure set {name!r}; known: {', '.join(FIGURE_SETS)}")
    module, _, attribute = FIGURE_SETS[name].partition(":")
    return getattr(import_module(module), attribute)


def measure(frames: np.ndarray, settings: dict, sets: Sequence[str] = ("video",)) -> dict[str, float]:
    """Every figure of these sets for one video, rounded and JSON-ready."""
    values = {}
    for name in sets:
        values.update(figure_set(name).measure(frames, settings))
    return {name: _json_ready(value) for name, value in values.items()}


def _json_ready(value):
    """Numbers rounded; a text (what a judge saw) or None (nothing to measure) as it is."""
    return value if value is None or isinstance(value, str) else round(float(value), 4)


def described(sets: Sequence[str] = ("video",)) -> tuple[Figure, ...]:
    return tuple(figure for name in sets for figure in figure_set(name).figures)


def describe(name: str) -> Figure:
    """The description of a figure by its name, from any known set (a bare one if none has it)."""
    for figure in described(FIGURE_SETS):
        if figure.name == name:
            return figure
    return Figure(name)


def _checked(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected frames shaped [frames, height, width, 3], got {frames.shape}")
    return frames


def _luma(frames: np.ndarray) -> np.ndarray:
    frames = _checked(frames)
    # Frame by frame keeps the float copy of a long video to a single channel.
    luma = np.empty(frames.shape[:3], dtype=np.float32)
    for index, frame in enumerate(frames):
        luma[index] = frame @ _LUMA
    return luma


def _flicker(luma: np.ndarray) -> float:
    if len(luma) < 2:
        return 0.0
    brightness = luma.mean(axis=(1, 2), dtype=np.float64)
    return float(np.abs(np.diff(brightness)).mean())


def _sharpness(luma: np.ndarray) -> float:
    return float(np.mean([_laplacian(frame).var(dtype=np.float64) for frame in luma]))


def _laplacian(frame: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of the interior pixels (no border guesses)."""
    return (
        frame[:-2, 1:-1] + frame[2:, 1:-1] + frame[1:-1, :-2] + frame[1:-1, 2:]
        - 4 * frame[1:-1, 1:-1]
    )
