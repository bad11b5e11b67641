"""The tiny pipelines by name: how each is built, where it is cached, and the arguments of a plain stock call."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pathlib
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from ..pipelines import pipeline_class
from .components import cogvideox, hunyuan_video, ltx, mochi, wan, wan22, wan22_ti2v, wan_i2v
from .hunyuan_video15 import hunyuan_video15
from .ltx2 import ltx2, ltx25
from .opensora import opensora
from .svd import svd

# Bump when a config in components.py changes, so that `cached` folders made before are not reused.
_FORMAT = 2


@dataclass(frozen=True)
class TinyPipeline:
    """How to build one tiny pipeline.

    ``parts`` maps the knobs (defaults in ``knobs``, changed by `build`'s overrides) to a factory
    per component. ``sizes`` are the smallest call sizes that give at least two latent frames, so
    that temporal attention has something to attend to.
    """

    pipeline: str
    parts: Callable[[dict], dict[str, Callable[[], Any]]]
    sizes: dict[str, int]
    knobs: dict[str, int] = field(default_factory=lambda: {"num_layers": 4, "width": 32, "heads": 2})
    image: bool = False  # the stock call needs a conditioning image
    also_loads_as: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)  # the pipeline's own registered settings


TINY_PIPELINES: dict[str, TinyPipeline] = {
    "ltx": TinyPipeline(
        "LTXPipeline",
        ltx,
        {"num_frames": 9, "height": 32, "width": 32},
        also_loads_as=("LTXImageToVideoPipeline",),
    ),
    "wan": TinyPipeline("WanPipeline", wan, {"num_frames": 5, "height": 16, "width": 16}),
    "wan-i2v": TinyPipeline(
        "WanImageToVideoPipeline", wan_i2v, {"num_frames": 5, "height": 16, "width": 16}, image=True
    ),
    "cogvideox": TinyPipeline("CogVideoXPipeline", cogvideox, {"num_frames": 9, "height": 16, "width": 16}),
    "cogvideox-i2v": TinyPipeline(
        "CogVideoXImageToVideoPipeline",
        partial(cogvideox, i2v=True),
        {"num_frames": 9, "height": 16, "width": 16},
        image=True,
    ),
    "mochi": TinyPipeline("MochiPipeline", mochi, {"num_frames": 7, "height": 16, "width": 16}),
    "hunyuan-video": TinyPipeline(
        "HunyuanVideoPipeline",
        hunyuan_video,
        {"num_frames": 5, "height": 16, "width": 16},
        knobs={"num_layers": 4, "num_single_layers": 2, "width": 32, "heads": 2},
    ),
    "ltx2": TinyPipeline(
        "LTX2Pipeline",
        ltx2,
        # LTX-2's decoder pads by reflection: at least 2x2 latent pixels.
        {"num_frames": 9, "height": 64, "width": 64},
        also_loads_as=("LTX2ImageToVideoPipeline",),
    ),
    "ltx2.5": TinyPipeline("LTX2Pipeline", ltx25, {"num_frames": 9, "height": 64, "width": 64}),
    # Wan 2.2 A14B's boundaries; with the tiny scheduler, step 0 of 2 or 3 is the high-noise expert's.
    "wan2.2": TinyPipeline(
        "WanPipeline", wan22, {"num_frames": 5, "height": 16, "width": 16}, config={"boundary_ratio": 0.875}
    ),
    "wan2.2-i2v": TinyPipeline(
        "WanImageToVideoPipeline",
        partial(wan22, i2v=True),
        {"num_frames": 5, "height": 16, "width": 16},
        image=True,
        config={"boundary_ratio": 0.9},
    ),
    "wan2.2-ti2v": TinyPipeline(
        "WanPipeline", wan22_ti2v, {"num_frames": 5, "height": 32, "width": 32}, config={"expand_timesteps": True}
    ),
    "hunyuan-video-1.5": TinyPipeline(
        "HunyuanVideo15Pipeline", hunyuan_video15, {"num_frames": 5, "height": 16, "width": 16}
    ),
    # The image-to-video pipeline sizes the video from the image: the square bucket of its target size, 32.
    "hunyuan-video-1.5-i2v": TinyPipeline(
        "HunyuanVideo15ImageToVideoPipeline",
        partial(hunyuan_video15, i2v=True),
        {"num_frames": 5, "height": 32, "width": 32},
        image=True,
    ),
    # Open-Sora 1.2's timestep transform needs 17 frames or more (5 latent frames per 17).
    "open-sora": TinyPipeline("OpenSoraPipeline", opensora, {"num_frames": 17, "height": 32, "width": 32}),
    # SVD's UNet layout is fixed (16 layers of each kind); 64 px is one 8x8 latent, halved three times by the UNet.
    "svd": TinyPipeline("StableVideoDiffusionPipeline", svd, {"num_frames": 4, "height": 64, "width": 64},
                        knobs={"num_layers": 16, "width": 32, "heads": 2, "num_frames": 4}, image=True),
}

# Smallest valid call sizes per name, and the number of main transformer blocks ("depth").
TINY_SIZES: dict[str, dict[str, int]] = {
    name: {**spec.sizes, "depth": spec.knobs["num_layers"]} for name, spec in TINY_PIPELINES.items()
}


def _spec(name: str) -> TinyPipeline:
    try:
        return TINY_PIPELINES[name]
    except KeyError:
        raise KeyError(f"unknown tiny pipeline {name!r}; known: {sorted(TINY_PIPELINES)}") from None


def _factories(name: str, overrides: dict) -> dict[str, Callable[[], Any]]:
    """Component factories after overrides.

    A knob name (``num_layers``, ``width``, ...) changes the knob; a component name with a dict
    updates that component's config keywords (e.g. ``transformer={"qk_norm": None}``).
    """
    spec = _spec(name)
    knobs = dict(spec.knobs)
    for key in [k for k in overrides if k in knobs]:
        knobs[key] = int(overrides[key])
    parts = spec.parts(knobs)
    for key, value in overrides.items():
        if key in knobs:
            continue
        if key not in parts or not isinstance(value, dict) or not isinstance(parts[key], partial):
            raise TypeError(
                f"{name}: unknown override {key!r}; knobs: {sorted(knobs)}, component configs: {sorted(parts)}"
            )
        factory = parts[key]
        parts[key] = partial(factory.func, *factory.args, **{**factory.keywords, **value})
    return parts


def build(name: str, folder: str | os.PathLike, **overrides) -> pathlib.Path:
    """Build the named tiny pipeline with fixed seeds and save it to folder; returns folder.

    torch.manual_seed(0) runs before each component, so a build is bitwise reproducible and a
    component's weights do not depend on the components built before it.
    """
    folder = pathlib.Path(folder)
    components = {}
    for part, factory in _factories(name, overrides).items():
        torch.manual_seed(0)
        components[part] = factory()
    pipe = pipeline_class(_spec(name).pipeline)(**components, **_spec(name).config)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _cache_key(name: str, overrides: dict) -> str:
    import diffusers
    import transformers

    blob = json.dumps(
        {
            "name": name,
            "overrides": overrides,
            "format": _FORMAT,
            "versions": [torch.__version__, diffusers.__version__, transformers.__version__],
        },
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def cached(name: str, cache_dir: str | os.PathLike | None = None, **overrides) -> pathlib.Path:
    """Folder of the named tiny pipeline under cache_dir, built on first use.

    cache_dir defaults to $STG_CACHE or ~/.cache/stg-studio. A folder holding model_index.json is
    reused. Its name is the pipeline name and a short hash of the overrides (and of the library
    versions, whose weight initialisation may change). The build goes to a temporary folder that
    is renamed atomically, so two processes never see a half-written folder.
    """
    _spec(name)
    default = os.environ.get("STG_CACHE") or pathlib.Path.home() / ".cache" / "stg-studio"
    root = pathlib.Path(cache_dir or default)
    target = root / f"{name}-{_cache_key(name, overrides)}"
    if (target / "model_index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        build(name, tmp, **overrides)
        tmp.chmod(0o755)  # mkdtemp made it private; the cache is not
        if target.exists() and not (target / "model_index.json").is_file():
            shutil.rmtree(target, ignore_errors=True)  # left by something else, never by this function
        try:
            os.rename(tmp, target)  # atomic on one file system; fails if another process got there first
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def stock_image(height: int, width: int):
    """A deterministic colour-gradient RGB image for image-to-video calls."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 128 + 0 * x], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def stock_call_kwargs(name: str, steps: int = 2, seed: int = 0, **extra) -> dict[str, Any]:
    """Arguments of a plain call of the named tiny pipeline at its smallest sizes.

    Image-to-video names get a conditioning image; `extra` replaces or adds arguments. Of the common ones, only
    those the pipeline takes are given (HunyuanVideo 1.5 sets its CFG scale in its guider, and its
    image-to-video size follows the image).
    """
    spec = _spec(name)
    takes = inspect.signature(pipeline_class(spec.pipeline).__call__).parameters
    kwargs: dict[str, Any] = dict(
        prompt="a red fox",
        negative_prompt="blurry",
        num_inference_steps=steps,
        guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
        **spec.sizes,
    )
    if spec.image:
        kwargs["image"] = stock_image(spec.sizes["height"], spec.sizes["width"])
    kwargs = {k: v for k, v in kwargs.items() if k in takes}
    kwargs.update(extra)
    return kwargs
