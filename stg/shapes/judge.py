"""Scores a video of the shapes model against its prompt: what it shows, and how cleanly.

Adherence: the shape's colour, the background's colour, the direction of motion and the shape's class, each read from
the frames alone. Quality, each lower-is-better and zero for a perfectly rendered clip (`QUALITY`). `FIGURES` is the
figure set the shapes preset adds to every video it makes.
"""

from __future__ import annotations

import numpy as np

from ..metrics import Figure, FigureSet
from .scenes import COLOURS, DIRECTIONS, SHAPES, Scene, parse, shape_mask

ATTRIBUTES = ("shape_colour", "background", "direction", "shape")
QUALITY = {
    "edge_px": Figure("edge_px", " px", "width of the shape's edge: pixels between shape and background colour per "
                      "pixel of outline (lower is crisper; a clean render is about 1)"),
    "area_var": Figure("area_var", "%", "variation of the shape's area over the frames, percent of its mean (lower "
                       "is steadier)"),
    "path_px": Figure("path_px", " px", "distance of the shape's centre from a straight path at a steady speed, RMS "
                      "(lower is straighter)"),
    "colour_err": Figure("colour_err", " RGB", "distance of the shape's inside from its palette colour in RGB units, "
                         "0-441 (lower is purer)"),
}
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_NAMES = list(COLOURS)
SEEN = 48.0  # RGB distance from the background above which a pixel is taken for the shape
MIN_AREA = 0.005  # fraction of the frame: less is no shape at all
CORE = 0.75  # pixels at least this share of the clip's largest distance from the background give the shape's colour
STILL = 0.04  # displacement over the clip, fraction of the shorter side: less is no motion


def nearest(rgb: np.ndarray, exclude: int | None = None) -> int:
    distance = np.linalg.norm(_PALETTE - rgb, axis=1)
    if exclude is not None:
        distance[exclude] = np.inf
    return int(np.argmin(distance))


def _background(clip: np.ndarray) -> tuple[int, np.ndarray]:
    """The palette colour most pixels of the clip are nearest to, and the median colour of those pixels."""
    pixels = clip.reshape(-1, 3)[:: max(1, clip.size // 3 // 20000)]
    nearest = np.argmin(np.linalg.norm(pixels[:, None, :] - _PALETTE[None], axis=2), axis=1)
    background = int(np.bincount(nearest, minlength=len(_PALETTE)).argmax())
    return background, np.median(pixels[nearest == background], axis=0)


def _centre_and_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def shape_scores(masks: list[np.ndarray], coverages: list[np.ndarray]) -> np.ndarray:
    """Per class of SHAPES, the mean overlap (intersection over union) of its outline, fitted to each frame's bounding
    box, with the seen shape."""
    scores = np.zeros(len(SHAPES))
    for mask, coverage in zip(masks, coverages):
        x, y, w, h = _centre_and_box(mask)
        for k, shape in enumerate(SHAPES):
            template = shape_mask(shape, x, y, w, h, *mask.shape)
            scores[k] += np.minimum(template, coverage).sum() / np.maximum(template, coverage).sum()
    return scores / max(len(masks), 1)


def shape_class(masks: list[np.ndarray], coverages: list[np.ndarray]) -> str:
    """The class whose outline overlaps the seen shape best over the clip."""
    return SHAPES[int(shape_scores(masks, coverages).argmax())]


def _direction(centres: np.ndarray, side: int) -> tuple[str, np.ndarray]:
    """The axis and sign of the larger displacement of a steady-speed line fitted to the centres, and its residuals."""
    t = np.arange(len(centres), dtype=np.float64)
    slope, intercept = np.polyfit(t, centres, 1)  # per axis
    residual = centres - (intercept + slope * t[:, None])
    dx, dy = slope * (len(centres) - 1)
    if max(abs(dx), abs(dy)) < STILL * side:
        return "still", residual
    step = (int(np.sign(dx)), 0) if abs(dx) >= abs(dy) else (0, int(np.sign(dy)))
    return next(name for name, d in DIRECTIONS.items() if d == step), residual


def judge(frames: np.ndarray, expected: Scene | str | None = None) -> dict:
    """What the clip shows and its quality figures; with an expected scene (or prompt), whether each part is right.

    Frames are uint8 [frames, height, width, 3]. A clip without a visible shape reads as shape "none", direction
    "still", and gets no quality figures.
    """
    clip = np.asarray(frames, dtype=np.float32)
    count, height, width, _ = clip.shape
    side = min(height, width)
    background, bg_rgb = _background(clip)
    distance = np.linalg.norm(clip - bg_rgb, axis=-1)
    seen = distance > SEEN
    verdict = {"shape_colour": "none", "background": _NAMES[background], "direction": "still", "shape": "none"}
    figures = dict.fromkeys(QUALITY)
    if seen.sum() >= MIN_AREA * height * width:
        # The shape's own colour is where it differs most from the background; its edges are a mix of both.
        core = distance >= CORE * np.percentile(distance[seen], 95)
        colour = nearest(np.median(clip[core], axis=0), exclude=background)
        verdict["shape_colour"] = _NAMES[colour]
        axis = _PALETTE[colour] - bg_rgb
        coverage = np.clip((clip - bg_rgb) @ axis / float(axis @ axis), 0.0, 1.0)  # per pixel, 0 background, 1 shape
        solid = coverage > 0.5
        present = [i for i in range(count) if solid[i].sum() >= MIN_AREA * height * width]
        if present:
            verdict["shape"] = shape_class([solid[i] for i in present], [coverage[i] for i in present])
            figures.update(quality(clip, coverage, solid, present, _PALETTE[colour]))
        if len(present) >= 2:
            centres = np.array([centroid(coverage[i] * solid[i]) for i in present])
            verdict["direction"], residual = _direction(centres, side)
            figures["path_px"] = float(np.sqrt((residual**2).sum(axis=1).mean()))
    result = {**verdict, **{k: None if v is None else round(float(v), 3) for k, v in figures.items()}}
    if isinstance(expected, str):
        expected = parse(expected)
    if expected is not None:
        truth = {"shape_colour": expected.colour, "background": expected.background, "direction": expected.direction,
                 "shape": expected.shape}
        result.update({f"{k}_ok": verdict[k] == truth[k] for k in ATTRIBUTES})
        result["all_ok"] = all(result[f"{k}_ok"] for k in ATTRIBUTES)
    return result


def centroid(weights: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[: weights.shape[0], : weights.shape[1]]
    total = weights.sum()
    return float((xs * weights).sum() / total + 0.5), float((ys * weights).sum() / total + 0.5)


def quality(clip, coverage, solid, present, rgb) -> dict:
    """Edge width, area variation and colour error of the shapes seen (`QUALITY`), given their palette colour."""
    edge, areas, errors = [], [], []
    for i in present:
        inside = solid[i]
        outline = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
        between = (coverage[i] > 0.1) & (coverage[i] < 0.9)
        edge.append(between.sum() / max(outline.sum(), 1))
        areas.append(coverage[i].sum())
        core = coverage[i] > 0.9
        if core.any():
            errors.append(np.linalg.norm(clip[i][core] - rgb, axis=1).mean())
    areas = np.array(areas)
    return {"edge_px": float(np.mean(edge)), "area_var": float(areas.std() / areas.mean() * 100),
            "colour_err": float(np.mean(errors)) if errors else None}


def seen(verdict: dict) -> str:
    """What the judge read from the frames, in the prompt's own words."""
    if verdict["shape"] == "none":
        return f"no shape on a {verdict['background']} background"
    motion = "standing still" if verdict["direction"] == "still" else f"moving {verdict['direction']}"
    return f"a {verdict['shape_colour']} {verdict['shape']} {motion} on a {verdict['background']} background"


def _figures(frames: np.ndarray, settings: dict) -> dict:
    verdict = judge(frames, settings.get("prompt"))
    right = sum(verdict[f"{name}_ok"] for name in ATTRIBUTES) if "all_ok" in verdict else None
    return {"prompt_right": right, "seen": seen(verdict), **{name: verdict[name] for name in QUALITY}}


FIGURES = FigureSet(
    (
        Figure("prompt_right", "/4", "how many of the prompt's shape colour, background colour, direction and shape "
               "the frames show (empty for a prompt outside the grammar)", relative=False),
        Figure("seen", "", "what the frames show, read back in the prompt's words", relative=False, text=True),
        *QUALITY.values(),
    ),
    _figures,
)
