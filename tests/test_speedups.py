"""Every speed-up equals the plain computation (fp32 CPU, 1e-5 relative): shared prefix, batched panels, chunking."""

from __future__ import annotations

import pytest
import torch
from tiny_cases import CASE_IDS, CASES, NEGATIVE, PROMPT, cfg_scale, folders, loaded, request  # noqa: F401

import stg
from stg.denoiser import COND, ISOLATED, PERTURBED, UNCOND, Row, chunk_rows, plan_rows

RTOL = 1e-5


def latents(backend, guidances, options, **speed) -> list[torch.Tensor]:
    """The final latents of every output (video, and sound where the model makes it)."""
    pipe, kwargs, _ = backend.prepare(PROMPT, guidances, negative_prompt=NEGATIVE, **options, **speed)
    output = pipe(**{**kwargs, "output_type": "latent"})
    return [output.frames] + ([output.audio] if backend.family.makes_sound else [])


def assert_relatively_close(fast: list[torch.Tensor], plain: list[torch.Tensor]):
    assert len(fast) == len(plain)
    for a, b in zip(fast, plain):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= RTOL * b.abs().max()


@pytest.mark.parametrize("mode", ["stg-r", "stg-a"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_shared_prefix_and_batching_equal_plain_passes(case, mode, loaded):
    backend, _ = loaded(case)
    last = backend.depth - 1
    options = request(case, roomy=True, steps=2)
    for blocks in ([0], [last], [last // 2, last]):
        panels = [
            stg.Guidance(cfg_scale(case), **case.extras),
            stg.Guidance(cfg_scale(case), stg_scale=1.5, stg_mode=mode, stg_blocks=blocks, rescale=0.7, **case.extras),
        ]
        fast = latents(backend, panels, options)
        plain = latents(backend, panels, options, share_prefix=False, max_rows=1)
        assert_relatively_close(fast, plain)
        separate = [latents(backend, [g], options, share_prefix=False, max_rows=1) for g in panels]
        assert_relatively_close(fast, [torch.cat(outputs) for outputs in zip(*separate)])


def test_rows_follow_the_window_and_scale():
    cfg = stg.Guidance(3.0)
    windowed = stg.Guidance(3.0, 1.0, "stg-a", [1], window=(0.5, 1.0))
    no_cfg = stg.Guidance(1.0, 1.0, "stg-r", [1])
    assert plan_rows([cfg, windowed], 0, 4, True) == [Row(0, UNCOND), Row(0, COND), Row(1, UNCOND), Row(1, COND)]
    assert plan_rows([cfg, windowed], 2, 4, True)[-1] == Row(1, PERTURBED)
    assert plan_rows([no_cfg], 0, 4, True) == [Row(0, COND), Row(0, PERTURBED)]
    assert plan_rows([windowed], 0, 4, False) == [Row(0, COND)]
    sound_only_cfg = stg.Guidance(1.0, modality_scale=3.0, audio_cfg_scale=7.0)  # the sound's CFG needs the uncond row
    assert plan_rows([sound_only_cfg], 0, 4, True) == [Row(0, UNCOND), Row(0, COND), Row(0, ISOLATED)]


def test_chunks_keep_a_panels_rows_together():
    rows = [Row(0, UNCOND), Row(0, COND), Row(1, UNCOND), Row(1, COND), Row(1, PERTURBED)]
    assert chunk_rows(rows, 5) == [rows]
    assert chunk_rows(rows, 3) == [rows[:2], rows[2:]]
    assert chunk_rows(rows, 2) == [rows[:2], rows[2:4], rows[4:]]
    assert chunk_rows(rows, 1) == [[r] for r in rows]


def test_out_of_memory_splits_the_rows_and_gives_the_same_result(loaded):
    case = CASES[0]
    backend, _ = loaded(case)
    options = request(case)
    panels = [stg.Guidance(3.0), stg.Guidance(3.0, 1.0, "stg-a", [2], rescale=0.7)]
    expected = latents(backend, panels, options)
    sizes = []

    def fail_on_large_batches(module, args, kwargs):
        batch = kwargs["hidden_states"].shape[0]
        sizes.append(batch)
        if batch > 2:
            raise torch.OutOfMemoryError("fault injected: batch too large")

    handle = backend.pipe.transformer.register_forward_pre_hook(fail_on_large_batches, with_kwargs=True)
    try:
        got = latents(backend, panels, options)
    finally:
        handle.remove()
    assert max(sizes) == 5 and sizes[-1] <= 2
    assert_relatively_close(got, expected)
