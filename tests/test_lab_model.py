"""The shipped lab model: what it draws right at the preset's defaults, and what STG alone does against no guidance,
on prompts and seeds drawn at random (the README's 100-prompt tables and scale sweep measure the same)."""

from __future__ import annotations

import numpy as np
import pytest

import stg
from stg.inputs import COMMANDS, task
from stg.lab import judge, world


@pytest.fixture(scope="module")
def lab():
    return stg.Backend.load("lab")


def _verdicts(backend, draw: int, count: int, **values) -> list[list[dict]]:
    """Each panel's verdicts of a comparison (the preset's defaults but `values`) for `count` drawn prompts."""
    rng = np.random.default_rng(draw)
    panels = [[], []]
    for _ in range(count):
        scene, seed = world.random_scene(rng), int(rng.integers(2**32))
        request = task(backend, COMMANDS["compare"], {**values, "prompt": scene.prompt, "seed": seed}).request
        for verdicts, video in zip(panels, backend.render(request)):
            verdicts.append(judge.judge(video.frames, scene))
    return panels


def test_follows_what_its_vae_can_draw(lab):
    """At the defaults, the CFG panel gets the colour, the background, the count and the speed right on 7 or 8 of 8
    prompts no one chose (motion, size and pattern on 5 or 6). The shape it gets right on 2: its VAE's round trip keeps
    no more (python -m stg.lab.ceiling: 33% of rendered clips keep their shape): not guidance's to fix here."""
    cfg, _ = _verdicts(lab, draw=2026, count=8)
    right = {name: sum(v[f"{name}_ok"] for v in cfg) for name in judge.ATTRIBUTES}
    assert min(right["colour"], right["background"], right["count"], right["speed"]) >= 7, right  # measured 8, 8, 7, 7


def test_stg_alone_sharpens_and_steadies_what_no_guidance_draws(lab):
    """STG alone (w 1, stg-r s 1 on block 4) against no guidance, paired over 24 prompts: the objects' edges are
    sharper and their area steadier (README: -1.25 +- 0.40 px and -3.9 +- 1.1 % over 100 prompts)."""
    unguided, with_stg = _verdicts(lab, draw=7, count=24, cfg_scale=1.0, stg_cfg_scale=1.0)
    for figure in ("edge_px", "area_var"):
        pairs = [(a[figure], b[figure]) for a, b in zip(unguided, with_stg) if None not in (a[figure], b[figure])]
        difference = np.mean([b - a for a, b in pairs])
        assert len(pairs) >= 20 and difference < 0, (figure, difference)  # measured -0.63 px and -2.5 % over 22
