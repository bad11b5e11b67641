"""The lab world's grammar and renderer: every prompt parses back, has a path that stays in the frame, and draws."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stg.lab import world

FRAMES, SIZE = 17, 64


def _drawn(prompt: str, seed: int) -> world.Scene:
    return world.scene_for(world.parse(prompt), np.random.default_rng(seed))


def test_grammar_round_trips_every_prompt():
    prompts = world.all_prompts()
    assert len(prompts) == len(set(prompts)) == 2 * 2 * 4 * 3 * 6 * 2 * 3 * 3
    for prompt in prompts:
        scene = world.parse(prompt)
        assert scene is not None and scene.prompt == prompt
        assert world.GUIDE.note(prompt) == ""
    assert world.parse("Two Large red circles circling quickly on a plain black background.").prompt == (
        "two large red circles circling quickly on a plain black background")
    assert world.parse("a large red circles circling quickly on a plain black background") is None  # plural of one
    assert world.parse("a large purple circle circling quickly on a plain black background") is None
    assert world.parse("a red circle moving left on a blue background") is None  # the shapes grammar
    assert "'purple', 'fox'" in world.GUIDE.note("a purple fox moving left")


def test_every_prompt_has_a_path_inside_the_frame_at_its_speed():
    """All 5184 prompts, free parts drawn from a seed: objects stay inside, keep apart, and move as named."""
    for index, prompt in enumerate(world.all_prompts()):
        scene = _drawn(prompt, index)
        centres = scene.centres(FRAMES, SIZE, SIZE)  # [objects, frames, 2]
        half = scene.side(SIZE, SIZE) / 2
        assert centres.shape == (scene.count, FRAMES, 2)
        assert (centres - half > 0).all() and (centres + half < SIZE).all(), prompt
        if scene.count == 2:  # bounding boxes never overlap
            gap = np.abs(centres[0] - centres[1]).max(axis=-1)
            assert (gap > 2 * half).all(), prompt
        steps = np.linalg.norm(np.diff(centres, axis=1), axis=-1)
        speed = world.SPEEDS[scene.speed] * SIZE
        # Circles move along chords (a hair under the arc); a bounce's turning step is shorter.
        assert np.median(steps) == pytest.approx(speed, rel=0.01), prompt
        heading = np.diff(centres, axis=1)
        if scene.motion in world.DIRECTIONS:
            assert (np.sign(heading) == world.DIRECTIONS[scene.motion]).all(), prompt
        elif scene.motion == "bouncing":
            dx = heading[..., 0]
            assert (heading[..., 1] == 0).all() and all((np.diff(np.sign(row[row != 0])) != 0).sum() == 1 for row in dx)


def test_a_covering_set_of_prompts_draws():
    """Every combination of count, shape, motion, pattern and background (sizes, colours and speeds in turn)."""
    combos = itertools.product(world.COUNTS, world.SHAPES, world.MOTIONS, world.PATTERNS, world.BACKGROUNDS)
    cycle = itertools.cycle(itertools.product(world.SIZES, world.COLOURS, world.SPEEDS))
    for index, (count, shape, motion, pattern, background) in enumerate(combos):
        size, colour, speed = next(cycle)
        scene = world.Scene(world.COUNTS[count], size, colour, shape, motion, speed, pattern, background)
        scene = world.scene_for(scene, np.random.default_rng(index))
        clip = world.render(scene, FRAMES, SIZE, SIZE)
        assert clip.shape == (FRAMES, SIZE, SIZE, 3) and clip.dtype == np.uint8
        backdrop = np.round(world.background(scene, SIZE, SIZE)).astype(np.uint8)
        assert (clip[:, [0, -1]] == backdrop[[0, -1]]).all() and (clip[:, :, [0, -1]] == backdrop[:, [0, -1]]).all()
        # The objects' own colour fills their inside in every frame.
        assert np.all(clip == np.array(world.COLOURS[colour]), axis=-1).any(axis=(1, 2)).all()
        shades = {tuple(int(v) for v in s) for s in world.BACKGROUNDS[background]}
        seen = {tuple(int(v) for v in px) for px in backdrop.reshape(-1, 3)}
        assert seen == (shades if pattern != "plain" else {tuple(world.BACKGROUNDS[background][0])})


def test_free_parts_come_from_the_seed():
    prompt = "two small red squares bouncing quickly on a striped grey background"
    same = [world.render(_drawn(prompt, 5)) for _ in range(2)]
    other = world.render(_drawn(prompt, 6))
    assert (same[0] == same[1]).all() and not (same[0] == other).all()
