"""Figures that describe a video, for comparing CFG with CFG+STG runs.

Pure numpy, so they run anywhere the app runs. Frames are uint8 arrays shaped
[frames, height, width, 3]; all figures work on BT.601 luma (0..255).

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

# Motion is measured on a copy whose long side is at most this many pixels:
# enough detail for displacements of a few pixels, and 121 frames of 768x512
# then take a fraction of a second.
MOTION_SIDE = 256
# Tile side for the local shift estimates; a tile resolves shifts up to half
# its side (here 16 px of the reduced copy per frame).
TILE = 32
# Tiles whose luma spread is below this (0..255) are flat: their shift cannot
# be measured and they count as still.
FLAT = 1.0
# A tile whose correlation peak is below this is no better than chance (two
# unrelated 32x32 tiles peak near 0.1), so it counts as still too.
CONFIDENT = 0.2

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def motion(frames: np.ndarray) -> float:
    """Mean displacement between consecutive frames, in pixels of the input size.

    A cheap stand-in for the mean optical-flow magnitude: each frame pair is cut
    into tiles and each tile's shift is found by phase correlation with a
    sub-pixel peak fit. Flat or unmatched tiles count as still.
    """
    return _motion(_luma(frames))


def flicker(frames: np.ndarray) -> float:
    """Mean absolute change of mean brightness (0..255) from frame to frame."""
    return _flicker(_luma(frames))


def sharpness(frames: np.ndarray) -> float:
    """Mean over frames of the variance of the Laplacian: higher is crisper."""
    return _sharpness(_luma(frames))


def figures(frames: np.ndarray) -> dict[str, float]:
    """All figures of one video, rounded and JSON-ready."""
    luma = _luma(frames)
    values = {"motion": _motion(luma), "flicker": _flicker(luma), "sharpness": _sharpness(luma)}
    return {name: round(float(value), 4) for name, value in values.items()}


@dataclass(frozen=True)
class Figure:
    """One figure: its key in the settings JSON, its unit as shown after a value, and what it measures."""

    name: str
    unit: str = ""
    help: str = ""
    relative: bool = True  # shown with its change against the CFG panel's, in percent
    text: bool = False  # words (what a judge read), not a number: kept out of printed tables and means

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
        Figure("motion", " px", "mean displacement between consecutive frames in pixels (phase correlation of "
               "tiles, a cheap stand-in for optical flow)"),
        Figure("flicker", "", "mean absolute change of the frame brightness from one frame to the next (0-255; "
               "lower is steadier)"),
        Figure("sharpness", "", "mean variance of the Laplacian of each frame (higher is crisper)"),
    ),
    lambda frames, settings: figures(frames),
)

# Figure sets by the name presets give them ("module:attribute", imported on first use).
FIGURE_SETS = {"video": f"{__name__}:VIDEO", "shapes": "stg.shapes.judge:FIGURES"}


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


def _luma(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected frames shaped [frames, height, width, 3], got {frames.shape}")
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


def _motion(luma: np.ndarray) -> float:
    if len(luma) < 2:
        return 0.0
    factor = -(-max(luma.shape[1:]) // MOTION_SIDE)
    tiles = _tiles(_shrink(luma, factor))
    spread = tiles.std(axis=(-2, -1))
    tiles = tiles - tiles.mean(axis=(-2, -1), keepdims=True)
    window = np.outer(np.hanning(tiles.shape[-2]), np.hanning(tiles.shape[-1]))
    spectra = np.fft.rfft2(tiles * window.astype(np.float32))
    cross = spectra[1:] * np.conj(spectra[:-1])
    cross /= np.maximum(np.abs(cross), 1e-9)
    surface = np.fft.irfft2(cross, s=tiles.shape[-2:])
    shift = np.hypot(*_peak(surface))
    moving = (
        (spread[1:] >= FLAT) & (spread[:-1] >= FLAT) & (surface.max(axis=(-2, -1)) >= CONFIDENT)
    )
    return float(np.where(moving, shift, 0.0).mean() * factor)


def _shrink(luma: np.ndarray, factor: int) -> np.ndarray:
    """Block-average by an integer factor, so shifts scale back exactly."""
    if factor == 1:
        return luma
    height, width = luma.shape[1] // factor, luma.shape[2] // factor
    blocks = luma[:, : height * factor, : width * factor]
    total = sum(blocks[:, y::factor, x::factor] for y in range(factor) for x in range(factor))
    return total / factor**2


def _tiles(luma: np.ndarray) -> np.ndarray:
    """Cut [frames, h, w] into centred [frames, rows, columns, th, tw] tiles."""
    count, height, width = luma.shape
    tile_h, tile_w = min(TILE, height), min(TILE, width)
    rows, columns = height // tile_h, width // tile_w
    top, left = (height - rows * tile_h) // 2, (width - columns * tile_w) // 2
    crop = luma[:, top : top + rows * tile_h, left : left + columns * tile_w]
    return crop.reshape(count, rows, tile_h, columns, tile_w).swapaxes(2, 3)


def _peak(surface: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel (dy, dx) of each correlation surface's highest point."""
    size_y, size_x = surface.shape[-2:]
    flat = surface.reshape(*surface.shape[:-2], size_y * size_x)
    py, px = np.divmod(flat.argmax(axis=-1), size_x)

    def at(step_y: int, step_x: int) -> np.ndarray:
        index = (py + step_y) % size_y * size_x + (px + step_x) % size_x
        return np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]

    centre = at(0, 0)
    dy = _offset(centre, at(-1, 0), at(1, 0))
    dx = _offset(centre, at(0, -1), at(0, 1))
    return _centred(py + dy, size_y), _centred(px + dx, size_x)


def _offset(centre: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Offset of the true peak from the grid peak along one axis.

    Phase correlation of a sub-pixel shift s spreads the peak like a sinc, for
    which neighbour / (neighbour + peak) on the higher side gives s exactly.
    """
    side = np.where(after >= before, 1.0, -1.0)
    neighbour = np.maximum(np.maximum(before, after), 0.0)
    return side * neighbour / np.maximum(neighbour + centre, 1e-12)


def _centred(position: np.ndarray, size: int) -> np.ndarray:
    """Map a circular position to a signed shift in [-size/2, size/2)."""
    return (position + size / 2) % size - size / 2
