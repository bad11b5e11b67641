"""The grammar of the shapes model and the clips it describes.

`a {colour} {shape} moving {direction} on a {colour} background`: one shape of one colour, on a plain background of
another, travelling in a straight line at a steady speed. `render` draws the clip (anti-aliased, pure numpy), so
training data and the judge's ground truth come from the same code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 90, 225),
    "yellow": (240, 210, 40),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
TEMPLATE = "a {colour} {shape} moving {direction} on a {background} background"
VOCABULARY = tuple(sorted({*COLOURS, *SHAPES, *DIRECTIONS, *re.findall(r"[a-z]+", TEMPLATE.format(
    colour="", shape="", direction="", background=""))}))

# Sizes as fractions of the frame's shorter side: the shape's bounding box, and how far it travels in one clip.
SIZE_RANGE = (0.36, 0.46)
TRAVEL_RANGE = (0.34, 0.44)
MARGIN = 0.04  # the shape stays this far inside the frame
SUPERSAMPLE = 4  # sub-pixels per pixel side for anti-aliased edges


@dataclass(frozen=True)
class Scene:
    """One clip of the grammar: what the prompt says, plus where and how big (which the prompt leaves open)."""

    colour: str
    shape: str
    direction: str
    background: str
    size: float = 0.41  # bounding-box side, fraction of the shorter frame side
    travel: float = 0.39  # distance covered over the clip, same unit
    offset: float = 0.5  # across the motion: 0 one edge of the free band, 1 the other
    start: float = 0.0  # along the motion: 0 the earliest start that keeps the whole path inside, 1 the latest

    def __post_init__(self):
        if self.colour not in COLOURS or self.background not in COLOURS:
            raise ValueError(f"colours must be among {', '.join(COLOURS)}")
        if self.colour == self.background:
            raise ValueError("the shape and the background must differ in colour")
        if self.shape not in SHAPES or self.direction not in DIRECTIONS:
            raise ValueError(f"shape must be one of {SHAPES} and direction one of {tuple(DIRECTIONS)}")

    @property
    def prompt(self) -> str:
        return TEMPLATE.format(colour=self.colour, shape=self.shape, direction=self.direction,
                               background=self.background)

    def centres(self, frames: int, height: int, width: int) -> np.ndarray:
        """Centre (x, y) in pixels per frame: a straight path at a steady speed."""
        side = min(height, width)
        half, margin, travel = self.size * side / 2, MARGIN * side, self.travel * side
        dx, dy = DIRECTIONS[self.direction]
        along_room = (width if dx else height) - 2 * (half + margin) - travel
        across_room = (height if dx else width) - 2 * (half + margin)
        first = half + margin + max(along_room, 0) * self.start
        across = half + margin + max(across_room, 0) * self.offset
        if dx < 0 or dy < 0:  # moving toward 0: start at the far end
            first = (width if dx else height) - first
        steps = np.linspace(0, travel, frames) * (dx + dy)
        along = first + steps
        return np.stack([along, np.full(frames, across)] if dx else [np.full(frames, across), along], axis=1)


def random_scene(rng: np.random.Generator) -> Scene:
    """Any scene of the grammar, with uniform attributes and a random placement."""
    colour, background = rng.choice(list(COLOURS), size=2, replace=False)
    return Scene(
        colour=str(colour), shape=str(rng.choice(SHAPES)), direction=str(rng.choice(list(DIRECTIONS))),
        background=str(background), size=float(rng.uniform(*SIZE_RANGE)), travel=float(rng.uniform(*TRAVEL_RANGE)),
        offset=float(rng.uniform()), start=float(rng.uniform()),
    )


def all_prompts() -> list[str]:
    """Every prompt of the grammar (6 x 5 colour pairs x 3 shapes x 4 directions = 360)."""
    return [Scene(c, s, d, b).prompt for c in COLOURS for b in COLOURS if b != c for s in SHAPES for d in DIRECTIONS]


_PARSE = re.compile(
    r"\s*an?\s+(?P<colour>\w+)\s+(?P<shape>\w+)\s+moving\s+(?P<direction>\w+)\s+on\s+an?\s+(?P<background>\w+)"
    r"\s+background\s*[.!]?\s*", re.IGNORECASE)


def parse(prompt: str) -> Scene | None:
    """The scene a prompt of the grammar describes (placement at its defaults); None for any other prompt."""
    return parsed(_PARSE, prompt, lambda words: Scene(**words))


def parsed(pattern: re.Pattern, prompt: str | None, make):
    """make(words) of a prompt that pattern matches whole (its named groups, lower-cased); None where it does not
    match or make refuses the words (ValueError)."""
    match = pattern.fullmatch(prompt or "")
    if match is None:
        return None
    try:
        return make({k: v.lower() for k, v in match.groupdict().items()})
    except ValueError:
        return None


def unknown_words(prompt: str, vocabulary: tuple[str, ...] = VOCABULARY) -> list[str]:
    """Words of a prompt that the model was never trained on, in order, each once."""
    words = re.findall(r"[^\W\d_]+", prompt.lower())
    return list(dict.fromkeys(w for w in words if w not in vocabulary))


def shape_mask(shape: str, centre_x: float, centre_y: float, box_width: float, box_height: float, height: int,
               width: int) -> np.ndarray:
    """Coverage of each pixel by the shape filling this bounding box, in [0, 1] (anti-aliased by supersampling).

    Only the pixels around the box are sampled: everything else is 0.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    coverage = np.zeros((height, width), dtype=np.float32)
    top, bottom = max(int(centre_y - box_height / 2) - 1, 0), min(int(centre_y + box_height / 2) + 2, height)
    left, right = max(int(centre_x - box_width / 2) - 1, 0), min(int(centre_x + box_width / 2) + 2, width)
    if top >= bottom or left >= right:
        return coverage
    n = SUPERSAMPLE
    ys = top + (np.arange((bottom - top) * n) + 0.5) / n
    xs = left + (np.arange((right - left) * n) + 0.5) / n
    u = (xs[None, :] - centre_x) / (box_width / 2)  # -1..1 across the bounding box
    v = (ys[:, None] - centre_y) / (box_height / 2)
    if shape == "circle":
        inside = u**2 + v**2 <= 1.0
    elif shape == "square":
        inside = (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    else:  # triangle: apex up, base down, filling the bounding box
        inside = (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2.0)
    coverage[top:bottom, left:right] = inside.reshape(bottom - top, n, right - left, n).mean(axis=(1, 3))
    return coverage


def render(scene: Scene, frames: int = 9, height: int = 32, width: int = 32) -> np.ndarray:
    """The clip as uint8 frames [frames, height, width, 3]."""
    side = scene.size * min(height, width)
    background = np.array(COLOURS[scene.background], dtype=np.float32)
    colour = np.array(COLOURS[scene.colour], dtype=np.float32)
    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    for index, (x, y) in enumerate(scene.centres(frames, height, width)):
        alpha = shape_mask(scene.shape, x, y, side, side, height, width)[..., None]
        clip[index] = np.round(background + alpha * (colour - background)).astype(np.uint8)
    return clip


@dataclass(frozen=True)
class Guide:
    """What a grammar-trained model knows of prompts, for the prompt box and a note on words it never saw."""

    model: str
    hint: str
    vocabulary: tuple[str, ...]

    def note(self, prompt: str) -> str:
        unknown = unknown_words(prompt, self.vocabulary)
        if not unknown:
            return ""
        return (f"The {self.model} model never saw {', '.join(repr(w) for w in unknown[:5])}"
                f"{' and more' if len(unknown) > 5 else ''}: it still runs, reading the words it knows.")


GUIDE = Guide(
    model="shapes",
    hint=(f"It knows one sentence: a {{colour}} {{shape}} moving {{direction}} on a {{colour}} background. Colours: "
          f"{', '.join(COLOURS)}; shapes: {', '.join(SHAPES)}; directions: {', '.join(DIRECTIONS)}."),
    vocabulary=VOCABULARY,
)
