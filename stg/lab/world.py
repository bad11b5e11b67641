"""The lab world: its grammar and a renderer that draws the ground-truth clip of every prompt.

`{a|two} {small|large} {colour} {shape}[s] {motion} {slowly|quickly} on a {plain|striped|checked} {black|grey|white}
background`, where the motion is `moving left|right|up|down` (a straight line), `bouncing` (back and forth, off the
left or right wall once) or `circling` (round a centre). Two objects share everything the prompt names and keep apart
(each in its own half of the frame, or opposite each other on one circle). The prompt leaves open where each object
starts, its exact size, the first direction of a bounce and the sense of a circle, and the stripes' phase: a seed
draws them (`scene_for`). Sizes and speeds are fractions of the frame's shorter side, so a clip reads the same at any
size; the grammar was made for 17 frames of 64x64.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from ..shapes.scenes import COLOURS as SHAPE_COLOURS
from ..shapes.scenes import DIRECTIONS, SHAPES, Guide, parsed, shape_mask

COUNTS = {"a": 1, "two": 2}
SIZES = {"small": (0.16, 0.19), "large": (0.26, 0.30)}  # bounding-box side, fraction of the shorter frame side
COLOURS = {name: SHAPE_COLOURS[name] for name in ("red", "green", "blue", "yellow")}
MOTIONS = ("left", "right", "up", "down", "bouncing", "circling")
SPEEDS = {"slowly": 1.25 / 64, "quickly": 2.5 / 64}  # distance per frame, fraction of the shorter side
PATTERNS = ("plain", "striped", "checked")
# Each background colour is two shades (the pattern alternates them; a plain background is the first), far enough from
# the other colours' shades that blur mixes a pattern only within its own colour.
BACKGROUNDS = {"black": ((20, 20, 20), (62, 62, 62)), "grey": ((145, 145, 145), (110, 110, 110)),
               "white": ((240, 240, 240), (200, 200, 200))}
BAND = 1 / 8  # width of a stripe or check, fraction of the shorter side
RADIUS = (0.22, 0.25)  # of a circling path (two large squares on it never touch), fraction of the shorter side
MARGIN = 0.03  # objects stay this far inside the frame (and their half of it)
MOTION_WORDS = {**{d: f"moving {d}" for d in DIRECTIONS}, "bouncing": "bouncing", "circling": "circling"}
TEMPLATE = "{count} {size} {colour} {shape} {motion} {speed} on a {pattern} {background} background"
VOCABULARY = tuple(sorted({*COUNTS, *SIZES, *COLOURS, *SHAPES, *(s + "s" for s in SHAPES), *DIRECTIONS, *MOTIONS,
                           *SPEEDS, *PATTERNS, *BACKGROUNDS, "moving", "on", "background"}))


@dataclass(frozen=True)
class Scene:
    """One clip: what the prompt names, and the free parts a seed draws (each in [0, 1], see `centres`)."""

    count: int
    size: str
    colour: str
    shape: str
    motion: str
    speed: str
    pattern: str
    background: str
    scale: float = 0.5  # where in its size class the objects' side lies
    places: tuple = ((0.5, 0.5), (0.5, 0.5))  # per object: along and across its path's free room
    sense: int = 1  # first direction of a bounce (+1 right), or of a circle (+1 clockwise on screen)
    phase: float = 0.0  # of the stripes or checks, in bands
    timing: tuple = field(default=(0.5, 0.5))  # per object: when a bounce meets the wall, share of its middle half

    def __post_init__(self):
        allowed = {"count": tuple(COUNTS.values()), "size": tuple(SIZES), "colour": tuple(COLOURS),
                   "shape": SHAPES, "motion": MOTIONS, "speed": tuple(SPEEDS), "pattern": PATTERNS,
                   "background": tuple(BACKGROUNDS)}
        for name, values in allowed.items():
            if getattr(self, name) not in values:
                raise ValueError(f"{name} must be one of {values}, got {getattr(self, name)!r}")

    @property
    def prompt(self) -> str:
        count = next(word for word, n in COUNTS.items() if n == self.count)
        return TEMPLATE.format(count=count, size=self.size, colour=self.colour,
                               shape=self.shape + ("s" if self.count > 1 else ""), motion=MOTION_WORDS[self.motion],
                               speed=self.speed, pattern=self.pattern, background=self.background)

    def side(self, height: int, width: int) -> float:
        """The objects' bounding-box side in pixels."""
        low, high = SIZES[self.size]
        return (low + (high - low) * self.scale) * min(height, width)

    def centres(self, frames: int, height: int, width: int) -> np.ndarray:
        """Centre (x, y) in pixels of each object in each frame: [objects, frames, 2]."""
        short = min(height, width)
        half, margin, speed = self.side(height, width) / 2, MARGIN * short, SPEEDS[self.speed] * short
        t = np.arange(frames, dtype=np.float64)
        paths = []
        if self.motion == "circling":  # one circle for both: its centre from places[0], its radius from places[1]
            radius = (RADIUS[0] + (RADIUS[1] - RADIUS[0]) * self.places[1][0]) * short
            reach = radius + half + margin
            cx, cy = (reach + (size - 2 * reach) * place for size, place in zip((width, height), self.places[0]))
            angle = np.pi * self.phase + np.arange(self.count)[:, None] * np.pi + self.sense * speed / radius * t
            return np.stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)], axis=-1)
        for k in range(self.count):
            along, across = self.places[k]
            dx, dy = (1, 0) if self.motion == "bouncing" else DIRECTIONS[self.motion]
            length, breadth = (width, height) if dx else (height, width)
            lane = breadth / self.count  # two objects: one half of the frame each
            cross = k * lane + half + margin + max(lane - 2 * (half + margin), 0) * across
            low, high = half + margin, length - half - margin
            if self.motion == "bouncing":
                meet = (0.25 + 0.5 * self.timing[k]) * (frames - 1)  # the frame at which it reaches the wall
                wall = high if self.sense > 0 else low
                position = wall - self.sense * speed * np.abs(t - meet)
            else:
                travel = speed * (frames - 1)
                first = low + max(high - low - travel, 0) * along
                position = first + travel * t / (frames - 1) if dx + dy > 0 else high - (first - low) - speed * t
            paths.append(np.stack([position, np.full(frames, cross)] if dx else [np.full(frames, cross), position], 1))
        return np.stack(paths)


def scene_for(prompt_scene: Scene, rng: np.random.Generator) -> Scene:
    """The scene with its free parts drawn from `rng`."""
    return replace(prompt_scene, scale=float(rng.uniform()), places=tuple(map(tuple, rng.uniform(size=(2, 2)))),
                   sense=int(rng.choice((-1, 1))), phase=float(rng.uniform(0, 2)),
                   timing=tuple(rng.uniform(size=2)))


def random_scene(rng: np.random.Generator) -> Scene:
    """Any scene of the grammar, each attribute uniform, with its free parts drawn."""
    pick = lambda values: values[int(rng.integers(len(values)))]  # noqa: E731
    scene = Scene(count=pick((1, 2)), size=pick(tuple(SIZES)), colour=pick(tuple(COLOURS)), shape=pick(SHAPES),
                  motion=pick(MOTIONS), speed=pick(tuple(SPEEDS)), pattern=pick(PATTERNS),
                  background=pick(tuple(BACKGROUNDS)))
    return scene_for(scene, rng)


def all_prompts() -> list[str]:
    """Every prompt of the grammar (2 counts x 2 sizes x 4 colours x 3 shapes x 6 motions x 2 speeds x 3 patterns
    x 3 backgrounds = 5184)."""
    return [Scene(n, z, c, s, m, v, p, b).prompt for n in COUNTS.values() for z in SIZES for c in COLOURS
            for s in SHAPES for m in MOTIONS for v in SPEEDS for p in PATTERNS for b in BACKGROUNDS]


_PARSE = re.compile(
    r"\s*(?P<count>an?|two)\s+(?P<size>\w+)\s+(?P<colour>\w+)\s+(?P<shape>\w+?)s?\s+(?:moving\s+)?(?P<motion>\w+)\s+"
    r"(?P<speed>\w+)\s+on\s+an?\s+(?P<pattern>\w+)\s+(?P<background>\w+)\s+background\s*[.!]?\s*", re.IGNORECASE)


def parse(prompt: str) -> Scene | None:
    """The scene a prompt of the grammar describes (free parts at their defaults); None for any other prompt."""
    count = lambda word: COUNTS.get(word.replace("an", "a"), 0)  # noqa: E731
    scene = parsed(_PARSE, prompt, lambda words: Scene(**{**words, "count": count(words["count"])}))
    return scene if scene and scene.prompt == re.sub(r"\s+", " ", prompt.strip().lower().rstrip(".!").strip()) else None


def background(scene: Scene, height: int, width: int) -> np.ndarray:
    """The still background as float RGB [height, width, 3]: one shade, or both in stripes or checks."""
    first, second = (np.array(c, dtype=np.float32) for c in BACKGROUNDS[scene.background])
    if scene.pattern == "plain":
        return np.broadcast_to(first, (height, width, 3)).copy()
    band = BAND * min(height, width)
    column = np.floor((np.arange(width) + 0.5) / band + scene.phase).astype(int)
    row = np.floor((np.arange(height) + 0.5) / band).astype(int) if scene.pattern == "checked" else np.zeros(height, int)
    odd = (row[:, None] + column[None, :]) % 2 == 1
    return np.where(odd[..., None], second, first)


def render(scene: Scene, frames: int = 17, height: int = 64, width: int = 64) -> np.ndarray:
    """The clip as uint8 frames [frames, height, width, 3] (anti-aliased objects over the background)."""
    base = background(scene, height, width)
    colour = np.array(COLOURS[scene.colour], dtype=np.float32)
    side = scene.side(height, width)
    centres = scene.centres(frames, height, width)
    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    for index in range(frames):
        alpha = np.zeros((height, width), dtype=np.float32)
        for x, y in centres[:, index]:
            alpha = np.maximum(alpha, shape_mask(scene.shape, x, y, side, side, height, width))
        clip[index] = np.round(base + alpha[..., None] * (colour - base)).astype(np.uint8)
    return clip


GUIDE = Guide(
    model="lab",
    hint=(f"It knows one sentence: {{a|two}} {{size}} {{colour}} {{shape}} {{motion}} {{speed}} on a {{pattern}} "
          f"{{colour}} background. Sizes: {', '.join(SIZES)}; colours: {', '.join(COLOURS)}; shapes: "
          f"{', '.join(SHAPES)}; motions: {', '.join(MOTION_WORDS.values())}; speeds: {', '.join(SPEEDS)}; "
          f"backgrounds: {', '.join(PATTERNS)} {', '.join(BACKGROUNDS)}."),
    vocabulary=VOCABULARY,
)
