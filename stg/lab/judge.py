"""Scores a video of the lab model against its prompt: what it shows, how well, and how varied over seeds.

`judge(frames, prompt)` reads every attribute of the grammar back from the frames alone (count, size, colour, shape,
motion, speed, pattern, background) and measures quality: speed against the prompt's true speed, shape fidelity
(overlap of each object with the best-fitting rendered outline), and the steadiness of motion, edges, colour and area.
`diversity(videos, prompt)` compares the spread of what the prompt leaves free (start position, exact size) over
several seeds with the spread the training distribution has. `FIGURES` is the figure set the lab preset adds.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from ..metrics import Figure, FigureSet
from ..shapes.judge import QUALITY as SHAPE_QUALITY
from ..shapes.judge import centroid, quality, shape_scores
from ..shapes.scenes import SHAPES
from .world import BACKGROUNDS, COLOURS, COUNTS, MOTION_WORDS, SIZES, SPEEDS, Scene, parse, render, scene_for

ATTRIBUTES = ("count", "size", "colour", "shape", "motion", "speed", "pattern", "background")
QUALITY = {
    "speed_err": Figure("speed_err", "%", "distance of the objects' mean speed from the prompt's true speed, percent "
                        "of it (lower is truer)"),
    "shape_iou": Figure("shape_iou", "", "overlap (intersection over union, 0-1) of each object with the rendered "
                        "outline of its class fitted to it, mean over frames (higher is truer to the shape)",
                        higher_is_better=True),
    "judder": Figure("judder", "%", "how unevenly what moves moves: the spread of each moving object's speed from "
                     "frame to frame, percent of its mean (0 for a steady path; a stutter, halting and jumping, is "
                     "tens of percent)"),
    **{name: SHAPE_QUALITY[name] for name in ("edge_px", "area_var", "colour_err")},
}
_SHADES = np.array([shade for pair in BACKGROUNDS.values() for shade in pair], dtype=np.float32)  # [6, 3]
_BACKGROUNDS = list(BACKGROUNDS)
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_COLOURS = list(COLOURS)
SEEN = 50.0  # RGB distance from every shade of the background above which a pixel is taken for an object
MIN_AREA = 0.004  # fraction of the frame: a smaller blob is no object
LARGE = np.sqrt(SIZES["small"][1] * SIZES["large"][0])  # bounding-box side between the two classes (of the side)
QUICK = np.sqrt(SPEEDS["slowly"] * SPEEDS["quickly"])  # speed between the two classes (of the side, per frame)
TURN = 0.8  # radians of steady turning over the clip: more is circling
LEG = 3  # frames of the slow speed a path must go out and back along its line to read as a bounce (rendered: 4 or more)
FLOOR = 0.2  # coverage below this (and above 1 minus it) reads as none (as full) when naming a shape
SKEW = 0.28  # skewness of an object's rows: more is a triangle (0.57 drawn sharp, 0 for a circle or square)
SQUARE_FILL = np.sqrt(np.pi / 4)  # share of its bounding box an object fills: more is a square (1), less a circle
PLAIN = 0.15  # mean place of the background between its first and second shade: less is a plain background


def _background(clip: np.ndarray) -> tuple[int, np.ndarray]:
    """The background colour most pixels are nearest to (by its shades), and each pixel's distance from that colour's
    nearer shade."""
    distance = np.linalg.norm(clip[..., None, :] - _SHADES, axis=-1)  # [..., 6]
    votes = np.bincount(distance.reshape(-1, len(_SHADES)).argmin(axis=1) // 2, minlength=len(_BACKGROUNDS))
    family = int(votes.argmax())
    return family, distance[..., 2 * family: 2 * family + 2].min(axis=-1)


def _still(clip: np.ndarray, family: int, background: np.ndarray) -> tuple[str, np.ndarray]:
    """The pattern, plain, striped (the shade changes across columns only) or checked (down rows too), and the still
    background as RGB [height, width, 3]: each pixel's place between the two shades, averaged over the frames where
    it is background (the pattern stands still); then how much of its variation the column means explain."""
    first, second = _SHADES[2 * family: 2 * family + 2]
    axis = second - first
    place = np.clip(((clip - first) * axis).sum(-1) / (axis * axis).sum(), 0.0, 1.0)
    seen = background.sum(axis=0)
    still = np.where(seen > 0, (place * background).sum(axis=0) / np.maximum(seen, 1), np.nan)  # [height, width]
    columns = np.nanmean(still, axis=0, keepdims=True) if np.isfinite(still).any() else np.zeros((1, still.shape[1]))
    if np.nanmean(still) < PLAIN:
        pattern = "plain"
    else:
        pattern = "striped" if np.nanvar(still - columns) < 0.5 * np.nanvar(still) else "checked"
    # Pixels never seen as background (under an object all along) take their column's mean.
    filled = np.where(np.isfinite(still), still, np.nan_to_num(np.broadcast_to(columns, still.shape)))
    return pattern, first + filled[..., None] * axis


def _shape(coverage: np.ndarray) -> str:
    """The shape of one object's soft coverage from two figures that blur and the pixel grid barely move: a triangle
    is lopsided (its mass sits toward its base: skewed rows), and a square fills its bounding box where a circle fills
    pi/4 of it (the box's sides as the sums of the column and row maxima). Coverage is stretched about its middle
    first, so that faint noise around the object counts for nothing."""
    coverage = np.clip((coverage - FLOOR) / (1 - 2 * FLOOR), 0.0, 1.0)
    rows = coverage.sum(axis=1)
    y = np.arange(len(rows), dtype=np.float64)
    mean = (rows * y).sum() / rows.sum()
    spread = np.sqrt((rows * (y - mean) ** 2).sum() / rows.sum())
    skew = (rows * (y - mean) ** 3).sum() / rows.sum() / max(spread, 1e-6) ** 3
    if abs(skew) >= SKEW:
        return "triangle"
    # Each column's (row's) extent is its largest mean of three neighbours down it (along it): less lifted by noise.
    width = ndimage.uniform_filter1d(coverage, 3, axis=0).max(axis=0).sum()
    height = ndimage.uniform_filter1d(coverage, 3, axis=1).max(axis=1).sum()
    fill = coverage.sum() / max(width * height, 1e-6)
    return "square" if fill >= SQUARE_FILL else "circle"


def _side(mask: np.ndarray) -> float:
    """The longer side of a blob's bounding box, in pixels."""
    ys, xs = np.nonzero(mask)
    return float(max(np.ptp(ys), np.ptp(xs)) + 1)


def _tracks(solid: np.ndarray, min_area: float) -> list[list[tuple[int, np.ndarray]]]:
    """Up to two objects followed over the frames: per object, (frame, its mask) where it was seen; each frame's
    blobs join the object whose last centre is nearest."""
    tracks: list[list[tuple[int, np.ndarray]]] = []
    for index, frame in enumerate(solid):
        labels, count = ndimage.label(frame)
        areas = ndimage.sum(frame, labels, range(1, count + 1))
        blobs = [labels == k + 1 for k in np.argsort(areas)[::-1][:2] if areas[k] >= min_area]
        if not tracks:
            tracks = [[(index, blob)] for blob in blobs]
            continue
        last = [np.array(centroid(track[-1][1])) for track in tracks]
        taken = set()
        for blob in blobs:
            centre = np.array(centroid(blob))
            order = [k for k in np.argsort([np.linalg.norm(centre - c) for c in last]) if k not in taken]
            if order:
                taken.add(order[0])
                tracks[order[0]].append((index, blob))
            elif len(tracks) < 2:
                tracks.append([(index, blob)])
    return tracks


def _motion(centres: np.ndarray, frames: np.ndarray, side: int) -> tuple[str, float]:
    """The motion word and the mean speed (pixels a frame) of one object's centres. The kind of path is read from the
    whole path, not from frame to frame, so that a stutter (an object that halts and slips back a pixel or two, as a
    VAE decoding four frames from one latent draws it) reads as neither a bounce nor a turn: a bounce goes back along
    its line at least `LEG` frames of the slow speed after going at least as far out; a circle's last third heads
    away from its first third's heading by two thirds of its turning."""
    steps = (centres[2:] - centres[:-2])[frames[2:] - frames[:-2] == 2] / 2
    if len(steps) < 2:
        return "still", 0.0
    speed = float(np.median(np.linalg.norm(steps, axis=1)))
    if speed < 0.3 * SPEEDS["slowly"] * side:
        return "still", speed
    centred = centres - centres.mean(axis=0)
    along = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]  # position along the path's main line
    for out in (along, -along):
        turn = int(out.argmax())
        if min(out[turn] - out[0], out[turn] - out[-1]) >= LEG * SPEEDS["slowly"] * side:
            return "bouncing", speed
    third = max(len(centres) // 3, 1)
    first, last = complex(*(centres[third] - centres[0])), complex(*(centres[-1] - centres[-1 - third]))
    if first and last and 1.5 * abs(np.angle(last / first)) >= TURN:
        return "circling", speed
    dx, dy = centres[-1] - centres[0]
    return (("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")), speed


def _judder(centres: np.ndarray, frames: np.ndarray) -> float | None:
    """How unevenly one moving object moves: the spread of its speed from each frame to the next, percent of its mean
    (0 for the renderer's steady paths, about 10-20 where a bounce meets its wall)."""
    speeds = np.linalg.norm(np.diff(centres, axis=0), axis=1)[np.diff(frames) == 1]
    return float(speeds.std() / speeds.mean() * 100) if len(speeds) > 2 and speeds.mean() > 0 else None


def read(frames: np.ndarray) -> dict:
    """What the clip shows, in the grammar's words, with the measurements behind it (`objects`: per object its
    centre and bounding-box side in the first frame it was seen, its mean speed and its judder)."""
    clip = np.asarray(frames, dtype=np.float32)
    length, height, width, _ = clip.shape
    side = min(height, width)
    family, distance = _background(clip)
    seen = distance > SEEN
    pattern, backdrop = _still(clip, family, ~seen)
    verdict = {"count": 0, "size": "none", "colour": "none", "shape": "none", "motion": "still", "speed": "none",
               "pattern": pattern, "background": _BACKGROUNDS[family], "objects": [], "figures": {}}
    if seen.sum() < MIN_AREA * height * width:
        return verdict
    core = distance >= 0.75 * np.percentile(distance[seen], 95)
    colour = int(np.argmin(np.linalg.norm(_PALETTE - np.median(clip[core], axis=0), axis=1)))
    verdict["colour"] = _COLOURS[colour]
    # Per pixel, how far it lies from the still background toward the objects' colour: 0 background, 1 object.
    axis = _PALETTE[colour] - backdrop
    coverage = np.clip(((clip - backdrop) * axis).sum(-1) / (axis * axis).sum(-1), 0.0, 1.0)
    solid = coverage > 0.5
    tracks = [t for t in _tracks(solid, MIN_AREA * height * width) if len(t) >= length // 2]
    if not tracks:
        return verdict
    counts = [sum(1 for t in tracks for index, _ in t if index == i) for i in range(length)]
    verdict["count"] = int(np.median(counts))
    masks = [blob for t in tracks for _, blob in t]
    verdict["size"] = "large" if np.median([_side(m) for m in masks]) >= LARGE * side else "small"
    # Each object's soft coverage around its blob, its blurred rim included: how much of its bounding box it fills
    # names the shape (blur keeps both), and the outline of that shape fitted to the blob gives the fidelity.
    soft = [coverage[i] * ndimage.binary_dilation(m, iterations=2) for t in tracks for i, m in t]
    shapes = [_shape(c) for c in soft]
    verdict["shape"] = max(SHAPES, key=shapes.count)
    shape = SHAPES.index(verdict["shape"])
    motions = []
    for track in tracks:
        index = np.array([i for i, _ in track])
        centres = np.array([centroid(coverage[i] * ndimage.binary_dilation(m, iterations=2)) for i, m in track])
        motion, speed = _motion(centres, index, side)
        motions.append(motion)
        verdict["objects"].append({"start": centres[0].tolist(), "side": _side(track[0][1]), "speed": speed,
                                   "judder": None if motion == "still" else _judder(centres, index)})
    verdict["motion"] = max(motions, key=motions.count)  # ties: the larger object's
    speed = float(np.mean([o["speed"] for o in verdict["objects"]]))
    verdict["speed"] = "none" if verdict["motion"] == "still" else "quickly" if speed >= QUICK * side else "slowly"
    present = [i for i in range(length) if counts[i]]
    judders = [o["judder"] for o in verdict["objects"] if o["judder"] is not None]
    verdict["figures"] = {"speed": speed, "shape_iou": float(shape_scores(masks, soft)[shape]),
                          "judder": float(np.mean(judders)) if judders else None,
                          **quality(clip, coverage, solid, present, _PALETTE[colour])}
    return verdict


def judge(frames: np.ndarray, expected: Scene | str | None = None) -> dict:
    """What the clip shows (`ATTRIBUTES`) and its quality figures (`QUALITY`, None where nothing was seen); with an
    expected scene or prompt, whether each attribute is right (`{name}_ok`, `all_ok`)."""
    verdict = read(frames)
    side = min(np.shape(frames)[1:3])
    result = {name: verdict[name] for name in ATTRIBUTES}
    figures = verdict["figures"]
    result.update({name: None if figures.get(name) is None else round(float(figures[name]), 3)
                   for name in ("shape_iou", "judder", "edge_px", "area_var", "colour_err")})
    result["speed_err"] = None
    if isinstance(expected, str):
        expected = parse(expected)
    if expected is not None:
        truth = {"count": expected.count, "size": expected.size, "colour": expected.colour, "shape": expected.shape,
                 "motion": expected.motion, "speed": expected.speed, "pattern": expected.pattern,
                 "background": expected.background}
        result.update({f"{k}_ok": result[k] == truth[k] for k in ATTRIBUTES})
        result["all_ok"] = all(result[f"{k}_ok"] for k in ATTRIBUTES)
        if "speed" in figures:
            true = SPEEDS[expected.speed] * side
            result["speed_err"] = round(abs(figures["speed"] - true) / true * 100, 3)
    return result


def _spread(verdicts: list[dict], side: int) -> tuple[float, float]:
    """Standard deviations, over clips, of the first object's start (x and y pooled) and of its side, in pixels;
    unbiased (n - 1), so that a few seeds' spread compares fairly with many rendered clips'."""
    objects = [v["objects"][0] for v in verdicts if v["objects"]]
    if len(objects) < 2:
        return 0.0, 0.0
    starts = np.array([o["start"] for o in objects])
    return float(starts.std(axis=0, ddof=1).mean()), float(np.std([o["side"] for o in objects], ddof=1))


DIVERSITY = ("start_spread", "size_spread")  # diversity's ratios to the training data's spread


@functools.lru_cache(maxsize=8)
def _truth_spread(prompt: str | Scene, shape: tuple[int, int, int], reference: int, seed: int) -> tuple[float, float]:
    """The spread in `reference` rendered clips of the prompt (kept: a sweep asks for one prompt's many times)."""
    scene = parse(prompt) if isinstance(prompt, str) else prompt
    rng = np.random.default_rng(seed)
    return _spread([read(render(scene_for(scene, rng), *shape)) for _ in range(reference)], min(shape[1:]))


def diversity(videos: list[np.ndarray], prompt: str | Scene, reference: int = 64, seed: int = 0) -> dict:
    """How varied one prompt's videos are in what the prompt leaves free, against the training distribution: the
    spread of start position and of size over the videos, and the same over `reference` rendered clips of the
    prompt, read by the same judge (ratios near 1 match the training data; near 0 is one clip over and over)."""
    frames, height, width = np.shape(videos[0])[:3]
    start, size = _spread([read(v) for v in videos], min(height, width))
    start_ref, size_ref = _truth_spread(prompt, (frames, height, width), reference, seed)
    return {"start_spread": round(start / start_ref, 3), "size_spread": round(size / size_ref, 3),
            "start_px": round(start, 3), "size_px": round(size, 3), "start_px_truth": round(start_ref, 3),
            "size_px_truth": round(size_ref, 3)}


def seen(verdict: dict) -> str:
    """What the judge read from the frames, in the prompt's own words."""
    if verdict["count"] == 0:
        return f"nothing on a {verdict['pattern']} {verdict['background']} background"
    count = next((word for word, n in COUNTS.items() if n == verdict["count"]), str(verdict["count"]))
    plural = "s" if verdict["count"] > 1 else ""
    still = verdict["motion"] == "still"
    motion = "standing still" if still else f"{MOTION_WORDS[verdict['motion']]} {verdict['speed']}"
    return (f"{count} {verdict['size']} {verdict['colour']} {verdict['shape']}{plural} {motion} on a "
            f"{verdict['pattern']} {verdict['background']} background")


def _figures(frames: np.ndarray, settings: dict) -> dict:
    verdict = judge(frames, settings.get("prompt"))
    right = sum(verdict[f"{name}_ok"] for name in ATTRIBUTES) if "all_ok" in verdict else None
    return {"prompt_right": right, "seen": seen(verdict), **{name: verdict[name] for name in QUALITY}}


FIGURES = FigureSet(
    (
        Figure("prompt_right", f"/{len(ATTRIBUTES)}", "how many of the prompt's count, size, colour, shape, motion, "
               "speed, pattern and background the frames show (empty for a prompt outside the grammar)",
               relative=False),
        Figure("seen", "", "what the frames show, read back in the prompt's words", relative=False, text=True),
        *QUALITY.values(),
    ),
    _figures,
)
