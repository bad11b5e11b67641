"""The types of a request's values: how each is read for the engine, parsed from a command line's text and
stated in words; block numbers, image files with their limits, and random seeds, read one way everywhere."""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from .limits import MAX_PROMPT_CHARS, MAX_SEED, integer_rule

MAX_IMAGE_BYTES = 20 * 1024**2
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
MAX_DIGITS = 20  # of a whole number read from text: more is out of every range here (and int() has a limit)
IMAGE_RULE = "a PNG, JPEG, WebP, BMP or GIF picture"
TOO_MANY_PIXELS = f"is too large: at most {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels"
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # pillow refuses to decode past twice this; load_image refuses past it


class InputError(ValueError):
    """A bad value of one setting, named as the API names it; `problem` is the message without the name."""

    def __init__(self, name: str, problem: str, sep: str = " "):
        super().__init__(f"{name}{sep}{problem}")
        self.name, self.problem = name, problem


class Kind:
    """A type of value: `read` gives the value for the engine (None already replaced by the setting's default,
    where it has one), `parse` a command line's text, `rule` the allowed values in words; `none` says what None
    means where no default replaces it, `metavar` how the command line shows a value."""

    metavar: str | None = None
    none: str | None = None

    def empty(self, value) -> bool:
        """Whether the value stands for "the default", as None does."""
        return value is None

    def read(self, value, setting, model):
        return value

    def parse(self, text: str, setting):
        return text

    def rule(self, setting, preset) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Kind):
    """Free text; the engine checks it (at most MAX_PROMPT_CHARS characters)."""

    metavar = "TEXT"

    def rule(self, setting, preset) -> str:
        return f"a text of at most {MAX_PROMPT_CHARS} characters"


@dataclass(frozen=True)
class Picture(Kind):
    """An image file, decoded with pillow only after its bytes and pixels are checked; RGB out."""

    metavar = "PATH"
    none = "no image"

    def read(self, value, setting, model):
        if value is None or isinstance(value, Image.Image):
            return value
        if model.image_to_video is False:
            raise InputError(setting.name, "is not accepted: this model makes video from text only; leave it empty")
        return load_image(value, setting.name)

    def rule(self, setting, preset) -> str:
        return f"{IMAGE_RULE}, at most {MAX_IMAGE_BYTES // 1024**2} MB and {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels"


@dataclass(frozen=True)
class Size(Kind):
    """steps, num_frames, height or width: an integer within the preset's limits, which the engine checks."""

    metavar = "N"

    def parse(self, text: str, setting):
        if not re.fullmatch(r"-?[0-9]+", text.strip()):  # int() would also take "１２", "1_000" and " 12 "
            raise InputError(setting.name, f"must be an integer written in the digits 0-9, got {text[:60]!r}")
        digits = text.strip().lstrip("-")
        if len(digits) > MAX_DIGITS:
            raise InputError(setting.name, f"is out of range: a number of {len(digits)} digits")
        return int(text)

    def rule(self, setting, preset) -> str:
        return integer_rule(*preset.bounds(setting.name)) if preset else "within the model's limits"


@dataclass(frozen=True)
class Seed(Size):
    """The seed of the initial noise; None picks one at random (the one used is returned)."""

    none = "a random seed (the one used is returned)"

    def read(self, value, setting, model):
        return random_seed() if value is None else value

    def rule(self, setting, preset) -> str:
        return integer_rule(0, MAX_SEED)


@dataclass(frozen=True)
class Number(Kind):
    """A number in [low, high], checked here, or by the engine where `engine` (a Guidance field: a finite number)."""

    low: float
    high: float
    step: float
    engine: bool = False
    metavar = "X"

    def read(self, value, setting, model):
        if not self.engine and (isinstance(value, bool) or not isinstance(value, (int, float))
                                or not self.low <= value <= self.high):
            raise InputError(setting.name, f"must be {self.rule(setting, None)}, got {sent(value)}")
        return value

    def parse(self, text: str, setting):
        try:
            if not text.isascii():  # float() would also take "１.５"
                raise ValueError
            value = float(text)
        except ValueError:
            raise InputError(setting.name, f"must be {self.rule(setting, None)}, got {text[:60]!r}") from None
        return self.read(value, setting, None)

    def rule(self, setting, preset) -> str:
        return f"a {'finite ' if self.engine else ''}number in [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Extra(Number):
    """A number of a model's own guidance (a second expert, sound, modality guidance), where the model has it;
    `none` says what leaving it out means. The engine refuses it on a model without what it acts on."""

    none: str | None = None
    whole: bool = False  # a whole number (the engine refuses others)

    def rule(self, setting, preset) -> str:
        return f"a whole number in [{self.low:g}, {self.high:g}]" if self.whole else super().rule(setting, preset)


@dataclass(frozen=True)
class Choice(Kind):
    """One of a few names, each with its meaning; the engine checks it."""

    options: dict[str, str]

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.options)

    def rule(self, setting, preset) -> str:
        return f"one of {', '.join(self.choices)}"


@dataclass(frozen=True)
class Blocks(Kind):
    """Block numbers, written '14, 19'; each once, in the order given; empty is the same as None."""

    most: int | None = None
    none: str | None = None

    def empty(self, value) -> bool:
        return value is None or isinstance(value, str) and not value.strip()

    def read(self, value, setting, model):
        if isinstance(value, (list, tuple)):
            return list(value)
        depth = model.depth if model is not None else None
        return parse_blocks(value, depth, None, setting.name, setting.metavar, self.most)

    def parse(self, text: str, setting):
        return self.read(text, setting, None)

    def rule(self, setting, preset) -> str:
        limit = f", at most {self.most}" if self.most else ""
        return f"block numbers separated by commas, such as {setting.metavar}, counted from 0{limit}"


def parse_blocks(text, depth: int | None = None, default=None, name: str = "stg_blocks", example: str = '"14, 19"',
                 most: int | None = None) -> list[int] | None:
    """'14, 19' -> [14, 19], each block once in the order given; empty or None -> default."""
    if text is None or not str(text).strip():
        return None if default is None else list(default)
    items = str(text).split(",")
    parts = [part for item in items for part in item.split()]
    empty = any(not item.strip() for item in items)  # "1,,2" or "1,": a typo, not a list of two
    if empty or not all(part.isascii() and part.isdigit() for part in parts):
        model = f" (this model has {depth} blocks: 0-{depth - 1})" if depth else ""
        why = ": an item between commas is empty" if empty else ""
        raise InputError(name, f"must be block numbers separated by commas, such as {example}{model}, "
                               f"got {str(text)[:60]!r}{why}")
    huge = next((part for part in parts if len(part) > MAX_DIGITS), None)
    if huge is not None:
        model = f": this model has {depth} blocks, allowed 0-{depth - 1}" if depth else ""
        raise InputError(name, f"{huge[:8]}... ({len(huge)} digits) out of range{model}")
    blocks = list(dict.fromkeys(int(part) for part in parts))
    if most is not None and len(blocks) > most:
        raise InputError(name, f"at most {most} blocks a sweep, got {len(blocks)}", sep=": ")
    return blocks


def load_image(path, name: str = "image") -> Image.Image:
    """Decode an image file with pillow only, after checking its bytes and pixels; RGB out."""
    try:
        size = os.path.getsize(path)
    except (OSError, TypeError) as error:
        raise InputError(name, f"cannot read {path}: {getattr(error, 'strerror', None) or 'not a file'}",
                         sep=": ") from None
    if size > MAX_IMAGE_BYTES:
        raise InputError(name, f"is too large: at most {MAX_IMAGE_BYTES // 1024**2} MB, got {size / 1024**2:.1f} MB")
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height <= MAX_IMAGE_PIXELS:
                return ImageOps.exif_transpose(image).convert("RGB")
    except Image.DecompressionBombError:
        raise InputError(name, TOO_MANY_PIXELS) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError(name, "is not a picture pillow can read: upload a PNG, JPEG, WebP, BMP or GIF file") from None
    raise InputError(name, f"{TOO_MANY_PIXELS}, got {width}x{height}")


def sent(value, number: bool = True) -> str:
    """A value as an error message quotes it, with its kind where that is not what the rule asks for (a number, or
    text where not `number`): '4' (text) would read as a number, 123 as text."""
    quoted = repr(value)[:80]
    if isinstance(value, bool):
        return f"{quoted} (true or false)"
    if isinstance(value, (int, float)):
        return quoted if number else f"{quoted} (a number)"
    if isinstance(value, str):
        return f"{quoted} (text)" if number else quoted
    kind = {list: "a list", tuple: "a list", dict: "an object"}.get(type(value), type(value).__name__)
    return f"{quoted} ({kind})"


def random_seed() -> int:
    return random.randint(0, MAX_SEED)


def shown(value) -> str:
    """A value as help texts show it: '"14, 19"' for blocks, 'text' quoted, 0.7 as 0.7."""
    if isinstance(value, (list, tuple)):
        return '"' + ", ".join(map(str, value)) + '"'
    if isinstance(value, str):
        return repr(value)
    return f"{value:g}" if isinstance(value, float) else str(value)
