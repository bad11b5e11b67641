"""The motion figure against ground truth: rendered clips whose true speed is known, at 32 to 768 px, clean, blurred
and noisy; and the shapes model's own clip, whose shape's speed is measured from its pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import stg
from stg import metrics
from stg.shapes import scenes

NOISE = 6.0  # grey levels, standard deviation per channel
CONDITIONS = {"clean": (0.0, 0.0), "blur": (1 / 64, 0.0), "noise": (0.0, NOISE), "blur+noise": (1 / 64, NOISE)}
# Where the figure misses the truth by more than 10%, as measured (stg/flow.py says why): motion of one pixel a frame
# in a large frame under noise, where a plain, textureless shape's only evidence is its outline, and where a blur of
# a sixty-fourth of the side leaves texture fainter than the noise (the flow then explains nothing and reads 0).
KNOWN_MISSES = {(256, "object", 1.0, "blur+noise"): "-100%", (256, "pan", 1.0, "blur+noise"): "-100%",
                (768, "object", 1.0, "blur+noise"): "-44%", (768, "pan", 1.0, "blur+noise"): "-100%",
                (768, "plain", 1.0, "noise"): "+107%", (768, "plain", 1.0, "blur+noise"): "+26%",
                (768, "pan", 1.0, "noise"): "+11%"}


def waves(rng: np.random.Generator, side: int, count: int = 16):
    """A smooth colour texture: a sum of plane waves with wavelengths from side/14 to side/3, any direction."""
    k = rng.uniform(3, 14, count) * 2 * np.pi / side
    angle, phase = rng.uniform(0, 2 * np.pi, count), rng.uniform(0, 2 * np.pi, count)
    amplitude = rng.uniform(0.5, 1, (count, 3)).astype(np.float32)

    def at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        total = np.zeros((*x.shape, 3), np.float32)
        for i in range(count):
            total += np.sin(k[i] * (np.cos(angle[i]) * x + np.sin(angle[i]) * y) + phase[i])[..., None] * amplitude[i]
        return 128 + 40 * total / np.sqrt(count / 2)

    return at


def clip(side: int, speed: float, kind: str, condition: str, frames: int, seed: int = 0) -> np.ndarray:
    """A clip of `speed` px a frame in a random direction: `object`, a textured disc over a still textured background;
    `plain`, a red disc on a blue background (nearly equal in brightness, as the shapes model draws); `pan`, the whole
    frame. Sub-pixel positions are exact (the textures and the disc's anti-aliased edge are functions of position)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:side, :side].astype(np.float32) + 0.5
    background, texture = waves(rng, side), waves(rng, side)
    angle = rng.uniform(0, 2 * np.pi)
    vx, vy = speed * np.cos(angle), speed * np.sin(angle)
    still = background(xs, ys) if kind == "object" else None
    blur, noise = CONDITIONS[condition]
    out = []
    for t in range(frames):
        dx, dy = vx * (t - (frames - 1) / 2), vy * (t - (frames - 1) / 2)
        if kind == "pan":
            image = background(xs - dx, ys - dy)
        else:
            alpha = np.clip(0.2 * side - np.hypot(xs - side / 2 - dx, ys - side / 2 - dy) + 0.5, 0, 1)[..., None]
            if kind == "plain":
                image = np.float32([40, 90, 225]) + alpha * np.float32([180, -50, -185])
            else:
                image = (1 - alpha) * still + alpha * texture(xs - dx, ys - dy)
        if blur:
            image = cv2.GaussianBlur(image, (0, 0), blur * side)
        if noise:
            image = image + rng.normal(0, noise, image.shape).astype(np.float32)
        out.append(np.clip(image, 0, 255).round().astype(np.uint8))
    return np.stack(out)


def cases():
    for side, speeds, frames in ((32, (0.02, 0.05), 5), (64, (0.02, 0.05), 5), (256, (1.0, 0.05), 3),
                                 (768, (1.0, 0.02), 3)):
        for kind in ("object", "plain", "pan"):
            for speed in speeds:
                for condition in CONDITIONS:
                    key = (side, kind, speed, condition)
                    marks = [pytest.mark.xfail(strict=True, reason=f"measured {KNOWN_MISSES[key]}")] \
                        if key in KNOWN_MISSES else []
                    yield pytest.param(side, kind, speed, condition, frames, marks=marks,
                                       id=f"{side}px-{kind}-{speed:g}-{condition}")


@pytest.mark.parametrize("side, kind, speed, condition, frames", list(cases()))
def test_motion_reads_the_true_speed_within_10_percent(side, kind, speed, condition, frames):
    """Speeds below 1 are fractions of the side (2% and 5% a frame), 1.0 is one pixel a frame."""
    true = speed * side if speed < 1 else speed
    assert metrics.motion(clip(side, true, kind, condition, frames, seed=side)) == pytest.approx(true, rel=0.10)


@pytest.mark.parametrize("kind", ["object", "pan"])
def test_still_clips_read_zero(kind):
    assert metrics.motion(clip(64, 0.0, kind, "noise", 4)) == 0.0


def test_unrelated_frames_do_not_read_as_motion():
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    assert metrics.motion(frames) < 0.1


def test_a_rendered_shape_reads_its_travel():
    scene = scenes.parse("a red circle moving right on a blue background")
    true = scene.travel * 32 / 8  # px over 8 frame steps
    assert metrics.motion(scenes.render(scene)) == pytest.approx(true, rel=0.10)


def shape_speed(frames: np.ndarray) -> float:
    """The shape's speed measured from its pixels: the mean step of the centroid of the pixels far from the
    background colour (the clip's median colour)."""
    background = np.median(frames.reshape(-1, 3), axis=0)
    far = np.linalg.norm(frames.astype(np.float32) - background, axis=-1) > 60
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    centres = np.array([[(xs * m).sum() / m.sum(), (ys * m).sum() / m.sum()] for m in far])
    return float(np.linalg.norm(np.diff(centres, axis=0), axis=1).mean())


def test_the_shapes_models_clip_reads_its_shapes_speed():
    """`a red circle moving right on a blue background`, seed 3, every panel of a comparison and the unguided one."""
    prompt = "a red circle moving right on a blue background"
    panels = [stg.Guidance(cfg_scale=4.0), stg.Guidance(cfg_scale=4.0, stg_scale=1.0, stg_blocks=[4]),
              stg.Guidance(cfg_scale=1.0)]
    for video in stg.Backend.load("shapes").run(prompt, panels, seed=3):
        true = shape_speed(video.frames)
        assert 1.4 < true < 1.8  # what the model draws: about 1.6 px a frame
        assert metrics.motion(video.frames) == pytest.approx(true, rel=0.10)


def test_the_explorers_most_motion_sentence_is_the_validated_figure():
    """The block explorer's table, and so its "Most motion" line, carry metrics.motion of each video."""
    import pandas as pd

    from stg import inputs, results
    from webapp.handlers import Studio

    backend = stg.Backend.load("shapes")
    command = inputs.COMMANDS["sweep"]
    values = {s.name: s.default for s in command.settings}  # as the API's parameters default
    task = inputs.task(backend, command, {**values, "prompt": "a red circle moving right on a blue background",
                                          "seed": 3, "steps": 4, "candidate_blocks": "0, 7"})
    videos = backend.render(task.request)
    table = results.compose(task, videos).parts["figures"]
    motions = [round(metrics.motion(v.frames), 4) for v in videos]
    assert [row["motion"] for row in table] == motions
    best = max(range(1, len(motions)), key=motions.__getitem__)
    line = Studio.summary(pd.DataFrame(table))
    assert line.startswith(f"Most motion: **{table[best]['label']}**, {motions[best]:.2f} px a frame against "
                           f"{motions[0]:.2f} px")


def test_lab_clips_read_their_objects_speed():
    """The lab world's rendered clips (one or two objects, straight, bouncing or circling, on plain, striped or
    checked backgrounds): the truth is the mean step of the objects' centres. Measured on these 24 scenes: 23 within
    10%, the worst 10.4% low (patterned backgrounds read a little low: the pattern at an object's rim)."""
    from stg.lab import world

    rng, errors = np.random.default_rng(0), []
    for _ in range(24):
        scene = world.random_scene(rng)
        frames = world.render(scene)
        true = np.linalg.norm(np.diff(scene.centres(*frames.shape[:3]), axis=1), axis=-1).mean()
        errors.append(metrics.motion(frames) / true - 1)
    errors = np.abs(errors)
    assert (errors <= 0.10).sum() >= 23 and errors.max() < 0.15
