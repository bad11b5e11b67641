"""The step cache (stg/cache.py): off or never reusing, it is the plain computation bit for bit; reusing, it follows
diffusers' First-Block Cache row by row, keeps the rows that run as they are, and leaks nothing between requests."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache
from faults import cancel_at_step_2, in_two_threads
from tiny_cases import (  # noqa: F401
    BY_ID, CASE_IDS, CASES, NEGATIVE, PROMPT, SEED, assert_frames_close, cfg_scale, folders, loaded, request,
)

import stg
from stg import cache, tiny
from stg.inputs import COMMANDS, task

NEVER = 1e-12  # a threshold no step's change is below: every hook runs, nothing is reused
ALWAYS = 1.0  # every row that may be reused is, from its second step on each expert
STEPS = 6
REUSE_CASES = [BY_ID[i] for i in ("ltx:LTXPipeline", "ltx2:LTX2Pipeline", "wan2.2:WanPipeline",
                                  "cogvideox:CogVideoXPipeline", "hunyuan-video:HunyuanVideoPipeline")]
REUSE_IDS = [c.id for c in REUSE_CASES]


def panels(case, mode: str, block: int) -> list[stg.Guidance]:
    w = cfg_scale(case)
    return [stg.Guidance(w, **case.extras), stg.Guidance(w, 1.0, mode, [block], rescale=0.7, **case.extras)]


def outputs(videos) -> list:
    return [(v.frames, v.audio) for v in videos]


def assert_equal(got, expected):
    for (frames, audio), (frames_0, audio_0) in zip(got, expected):
        np.testing.assert_array_equal(frames, frames_0)
        if audio_0 is not None:
            np.testing.assert_array_equal(audio, audio_0)


def reused(videos) -> int:
    return sum(count["reused"] for v in videos for count in v.settings["forwards"].values())


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_off_and_never_reusing_equal_uncached_bit_for_bit(case, loaded):
    """Both modes, the shared prefix from the first block and from the last; threshold 0 is off, a threshold nothing
    is below runs every cache hook and must change nothing. Families whose layers interleave refuse a threshold
    (test_svd, test_opensora_stg), so off is all they have."""
    backend, _ = loaded(case)
    options = request(case, negative_prompt=NEGATIVE)
    thresholds = [NEVER] if backend.family.step_cache else []
    for mode in ("stg-a", "stg-r"):
        for block in (0, backend.depth - 1):
            guidances = panels(case, mode, block)
            uncached = backend.run(PROMPT, guidances, **options)
            for threshold in thresholds:
                never = backend.run(PROMPT, guidances, cache=threshold, **options)
                assert_equal(outputs(never), outputs(uncached))
                assert reused(never) == 0 and never[1].settings["cache"] == threshold
    assert_equal(outputs(backend.run(PROMPT, guidances, cache=0, **options)), outputs(uncached))
    ran = uncached[1].settings["forwards"]
    assert ran["cond"] == {"ran": options["steps"], "reused": 0} and ran["perturbed"]["ran"] == options["steps"]
    assert ("uncond" in ran) == case.cfg and ("isolated" in ran) == case.own_stg


def test_one_row_follows_diffusers_first_block_cache(folders):
    """A panel of one row (CFG and STG off) is what diffusers' own First-Block Cache makes of the stock pipeline."""
    folder = folders("ltx")
    backend = stg.Backend.load(str(folder))
    stock = diffusers.LTXPipeline.from_pretrained(folder)
    apply_first_block_cache(stock.transformer, FirstBlockCacheConfig(threshold=0.2))
    for pipe in (backend.pipe, stock):
        pipe.set_progress_bar_config(disable=True)
    sizes = {k: v for k, v in tiny.TINY_SIZES["ltx"].items() if k in ("num_frames", "height", "width")}
    ours = backend.generate(PROMPT, stg.Guidance(1.0), seed=SEED, steps=STEPS, cache=0.2, **sizes)
    theirs = stock(PROMPT, guidance_scale=1.0, num_inference_steps=STEPS, output_type="np",
                   generator=torch.Generator("cpu").manual_seed(SEED), **sizes)
    assert 0 < ours.settings["forwards"]["cond"]["reused"] < STEPS - 1
    assert_frames_close(ours.frames, theirs.frames[0])


@pytest.mark.parametrize("case", REUSE_CASES, ids=REUSE_IDS)
def test_reuse_is_per_row_kind_and_keeps_the_shared_prefix_exact(case, loaded):
    """With one kind cached, the others run every step; and whichever rows are reused, sharing the perturbed row's
    prefix with its conditional twin gives what computing it apart gives."""
    backend, _ = loaded(case)
    options = request(case, negative_prompt=NEGATIVE, steps=STEPS)
    guidances = panels(case, "stg-a", backend.depth - 1)
    uncached = backend.run(PROMPT, guidances, **options)
    for kinds in (None, frozenset({"cond"}), frozenset({"perturbed"})):
        checked = backend.check(PROMPT, guidances, cache=ALWAYS, **options)
        shared = backend.render(checked, cache_rows=kinds)
        apart = backend.render(checked, cache_rows=kinds, share_prefix=False)
        for s, a in zip(shared, apart):
            assert_frames_close(s.frames, a.frames.astype(np.float64) / 255)
            assert s.settings["forwards"] == a.settings["forwards"]
        for kind, count in shared[1].settings["forwards"].items():
            cached = kinds is None or kind in kinds
            assert count["reused"] == (STEPS - len(case.experts) if cached else 0), (kinds, kind, count)
        if kinds == frozenset({"perturbed"}):  # the CFG panel's rows all ran: its video is the uncached one
            assert_frames_close(shared[0].frames, uncached[0].frames.astype(np.float64) / 255)
        assert np.abs(shared[1].frames.astype(int) - uncached[1].frames).max() > 0


@pytest.mark.parametrize("case", [BY_ID["ltx:LTXPipeline"], BY_ID["ltx2:LTX2Pipeline"]], ids=["ltx", "ltx2"])
def test_concurrent_and_cancelled_cached_requests_leave_nothing_behind(case, loaded):
    backend, _ = loaded(case)
    options = request(case, negative_prompt=NEGATIVE, steps=STEPS)
    guidances = panels(case, "stg-r", 1)
    settings = [0.3, 0.0]
    serial = [outputs(backend.run(PROMPT, guidances, cache=t, **options)) for t in settings]
    assert serial[0][1][0].tolist() != serial[1][1][0].tolist()

    with pytest.raises(stg.Cancelled):
        backend.run(PROMPT, guidances, cache=0.3, callback=cancel_at_step_2, **options)
    assert cache._FORWARD.get() is None
    assert_equal(outputs(backend.run(PROMPT, guidances, cache=0.3, **options)), serial[0])

    results = in_two_threads(lambda i: outputs(backend.run(PROMPT, guidances, cache=settings[i], **options)))
    for got, expected in zip(results, serial):
        assert_equal(got, expected)


def test_the_threshold_is_checked_by_name(loaded):
    backend, _ = loaded(CASES[0])
    for bad in (-0.1, 1.5, float("nan"), True, "0.1"):
        with pytest.raises(ValueError, match=r"^cache must be a finite number in \[0, 1\], got "):
            backend.check(PROMPT, [stg.Guidance(3.0)], cache=bad)
    values = {"prompt": PROMPT, "stg_blocks": "1", "candidate_blocks": "1"}
    with pytest.raises(ValueError, match=r"^cache must be"):
        task(backend, COMMANDS["compare"], {**values, "cache": 2.0})
    assert task(backend, COMMANDS["sweep"], {**values, "cache": 0.1}).request.cache == 0.1
    assert task(backend, COMMANDS["generate"], values).request.cache == 0.0


def test_benchmark_times_the_cache_levels(capsys, monkeypatch, tmp_path):
    from stg import bench

    monkeypatch.setenv("STG_CACHE", str(tmp_path))
    result = bench.main(["--layers", "4", "--block", "3", "--frames", "9", "--height", "32", "--width-px", "32",
                         "--steps", "4", "--repeats", "1", "--cache", "1.0"])
    figures = result["cache"]["1"]
    assert figures["over_uncached"] > 0 and figures["over_stock_cfg"] > 0
    assert figures["forwards"]["perturbed"]["reused"] > 0 and figures["floor_over_uncached"] < 1
    assert "cache 1: comparison / uncached" in capsys.readouterr().out
