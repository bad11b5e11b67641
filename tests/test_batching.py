"""A panel alone (/generate) and the same panel beside the CFG one (/compare): equal within the tolerance that the
README and every settings JSON state, in float32 on the CPU."""

from __future__ import annotations

import numpy as np

from stg import results
from stg.backend import Backend
from stg.guidance import Guidance


def test_a_panel_alone_and_in_a_comparison_agree_within_the_stated_tolerance():
    backend = Backend.load("tiny")
    backend.pipe.set_progress_bar_config(disable=True)
    cfg = Guidance(cfg_scale=3.0)
    with_stg = Guidance(cfg_scale=3.0, stg_scale=1.0, stg_mode="stg-a", stg_blocks=[2], rescale=0.7)
    apart = []
    for seed in (0, 1):
        alone = backend.generate("a red fox", with_stg, seed=seed, steps=4, num_frames=9, height=32, width=64)
        beside = backend.compare("a red fox", cfg, with_stg, seed=seed, steps=4, num_frames=9, height=32, width=64)[1]
        apart.append(np.abs(alone.frames.astype(int) - beside.frames.astype(int)).max())
    assert max(apart) <= 1, apart  # 1/255 per value, as stated
    document = results.settings_document([alone], ["CFG + STG"], fps=8)
    assert "within 1/255 per value in float32" in document["batching"]
