"""The shapes grammar, its renderer and the judge, on the renderer's own clips (ground truth by construction)."""

from __future__ import annotations

import numpy as np
import pytest

from stg.shapes import judge, scenes
from trained_worlds import blur as _blur


def _scenes(count: int, seed: int) -> list[scenes.Scene]:
    rng = np.random.default_rng(seed)
    return [scenes.random_scene(rng) for _ in range(count)]


def test_grammar_round_trips_every_prompt():
    prompts = scenes.all_prompts()
    assert len(prompts) == len(set(prompts)) == 6 * 5 * 3 * 4
    for prompt in prompts:
        scene = scenes.parse(prompt)
        assert scene is not None and scene.prompt == prompt
        assert scenes.unknown_words(prompt) == []
    assert scenes.parse("A Red circle moving left on a blue background.").prompt == prompts[0].replace(
        prompts[0], "a red circle moving left on a blue background")
    assert scenes.parse("a red circle moving left on a red background") is None  # same colours
    assert scenes.parse("a red fox moving left on a blue background") is None
    assert scenes.unknown_words("A purple fox, moving left on a blue background") == ["purple", "fox"]


@pytest.mark.parametrize("frames, height, width", [(9, 64, 64), (9, 32, 32), (17, 64, 96)])
def test_clips_stay_inside_and_move_a_good_part_of_the_frame(frames, height, width):
    for scene in _scenes(50, seed=frames + height + width):
        clip = scenes.render(scene, frames, height, width)
        assert clip.shape == (frames, height, width, 3) and clip.dtype == np.uint8
        background = np.array(scenes.COLOURS[scene.background])
        shape = np.any(clip != background, axis=-1)
        assert not shape[:, 0].any() and not shape[:, -1].any() and not shape[:, :, 0].any() and not shape[:, :, -1].any()
        centres = scene.centres(frames, height, width)
        assert np.linalg.norm(centres[-1] - centres[0]) >= scenes.TRAVEL_RANGE[0] * min(height, width) - 1e-6
        # The shape's own colour fills its inside exactly.
        assert (np.all(clip == np.array(scenes.COLOURS[scene.colour]), axis=-1)).any(axis=(1, 2)).all()


@pytest.mark.parametrize("frames, height, width", [(9, 64, 64), (9, 32, 32), (17, 64, 96)])
def test_judge_reads_rendered_clips(frames, height, width):
    """At least 98% right per attribute (the renderer's own clips are the ground truth)."""
    chosen = _scenes(150, seed=7 * frames + height)
    verdicts = [judge.judge(scenes.render(s, frames, height, width), s) for s in chosen]
    for name in judge.ATTRIBUTES:
        assert np.mean([v[f"{name}_ok"] for v in verdicts]) >= 0.98, name
    for v in verdicts:  # quality figures of a clean render sit near their ideal, zero
        assert v["edge_px"] < 1.5 and v["area_var"] < 3 and v["path_px"] < 0.5 and v["colour_err"] < 3


def test_judge_survives_blur_and_noise_and_sees_what_is_wrong():
    rng = np.random.default_rng(3)
    kernel = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16  # binomial blur, about 1 px
    chosen = _scenes(100, seed=11)
    right = []
    for scene in chosen:
        clip = _blur(scenes.render(scene), kernel) + rng.normal(0, 10, (9, 32, 32, 3))
        right.append(judge.judge(np.clip(clip, 0, 255).astype(np.uint8), scene)["all_ok"])
    assert np.mean(right) >= 0.98
    # A different scene is judged wrong in what differs, right in the rest.
    scene = scenes.Scene("red", "circle", "left", "blue")
    other = scenes.Scene("green", "triangle", "up", "blue")
    verdict = judge.judge(scenes.render(other), scene)
    assert verdict["background_ok"] and not verdict["shape_colour_ok"] and not verdict["direction_ok"]
    assert not verdict["shape_ok"] and not verdict["all_ok"]
    # Edges blurred on purpose read as wider than the clean render's.
    blurred = _blur(scenes.render(scene), np.ones(5) / 5)
    assert judge.judge(blurred.astype(np.uint8))["edge_px"] > 2 * judge.judge(scenes.render(scene))["edge_px"]


def test_judge_of_a_clip_without_a_shape():
    still = np.broadcast_to(np.array(scenes.COLOURS["white"], dtype=np.uint8), (9, 32, 32, 3))
    verdict = judge.judge(still, "a red circle moving left on a white background")
    assert verdict["shape"] == "none" and verdict["direction"] == "still" and verdict["background_ok"]
    assert not verdict["all_ok"] and verdict["edge_px"] is None
