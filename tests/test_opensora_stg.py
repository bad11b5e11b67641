"""Open-Sora 1.2 in STG Studio: STDiT3's spatial and temporal blocks are the two kinds of layer of factorized STG;
the CFG panel is the stock OpenSoraPipeline call, and STG equals a plain pass-by-pass reference (CPU, fp32)."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from factorized import every_pass_mode_and_rescale, guided

import stg
from stg import families, tiny
from stg.opensora import OpenSoraPipeline
from stg.opensora.transformer import OpenSoraAttnProcessor

RTOL = 1e-5
PROMPT = "a red fox runs on the grass"
SIZE = dict(num_frames=17, height=32, width=32)
STEPS = 3
SEED = 5


@pytest.fixture(scope="module")
def opensora(tmp_path_factory):
    folder = tiny.build("open-sora", tmp_path_factory.mktemp("open-sora"))
    backend = stg.Backend.load(str(folder))
    stock = OpenSoraPipeline.from_pretrained(folder)
    for pipe in (backend.pipe, stock):
        pipe.set_progress_bar_config(disable=True)
    return backend, stock


def assert_relatively_close(ours: torch.Tensor, reference: torch.Tensor):
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max() <= RTOL * reference.abs().max()


def our_latents(backend, guidances, negative_prompt="") -> torch.Tensor:
    pipe, kwargs, _ = backend.prepare(PROMPT, guidances, negative_prompt=negative_prompt, seed=SEED, steps=STEPS,
                                      **SIZE)
    return pipe(**{**kwargs, "output_type": "latent"}).frames


def stock_latents(pipe, guidance_scale: float, negative_prompt=None, output_type="latent"):
    return pipe(PROMPT, negative_prompt=negative_prompt, **SIZE, num_inference_steps=STEPS,
                guidance_scale=guidance_scale, generator=torch.Generator("cpu").manual_seed(SEED),
                output_type=output_type).frames


def test_layers_are_the_spatial_and_temporal_blocks(opensora):
    """Spatial block k runs right before temporal block k; each kind is numbered 0..depth-1 on its own."""
    backend, _ = opensora
    transformer = backend.pipe.transformer
    family = families.FAMILIES["open-sora"]
    assert list(family.blocks.blocks(transformer)) == list(transformer.spatial_blocks)
    assert list(family.temporal.blocks(transformer)) == list(transformer.temporal_blocks)
    assert backend.depth == backend.temporal_depth == 4
    order = []
    handles = [block.register_forward_pre_hook(lambda *_, n=name: order.append(n))
               for name, block in transformer.named_modules() if name.count(".") == 1 and "_blocks." in name]
    try:
        backend.generate(PROMPT, stg.Guidance(1.0), seed=SEED, steps=2, **SIZE)
    finally:
        for handle in handles:
            handle.remove()
    pairs = [name for k in range(4) for name in (f"spatial_blocks.{k}", f"temporal_blocks.{k}")]
    assert order == pairs * 2


@pytest.mark.parametrize("negative_prompt", ["", "blurry worst quality"], ids=["null-text", "negative-prompt"])
@pytest.mark.parametrize("cfg_scale", [7.0, 1.0], ids=["cfg", "off"])
def test_cfg_panel_equals_stock(opensora, negative_prompt, cfg_scale):
    """The CFG panel of a comparison is the stock call, the empty negative prompt being the learned null text."""
    backend, stock = opensora
    panels = [stg.Guidance(cfg_scale), stg.Guidance(cfg_scale, stg_scale=1.0, stg_blocks=[1])]
    ours = our_latents(backend, panels, negative_prompt)
    assert_relatively_close(ours[:1], stock_latents(stock, cfg_scale, negative_prompt))
    video = backend.generate(PROMPT, panels[0], negative_prompt=negative_prompt, seed=SEED, steps=STEPS, **SIZE)
    frames = stock_latents(stock, cfg_scale, negative_prompt, output_type="np")[0]
    assert np.abs(video.frames / 255 - frames).max() <= 1 / 255 + 1e-6 and video.frames.std() > 0


class IdentityAttention(OpenSoraAttnProcessor):
    """stg-a for a whole batch: every token's attention output is its own value vector, then the output projection."""

    def __call__(self, attn, hidden_states, *args, **kwargs):
        return attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))


@contextmanager
def perturbed(blocks, mode: str):
    """The blocks perturbed for every row: stg-a by attention processor, stg-r by a forward returning its input."""
    for block in blocks:
        if mode == "stg-a":
            block.attn1.set_processor(IdentityAttention())
        else:
            block.forward = lambda hidden_states, *args, **kwargs: hidden_states
    try:
        yield
    finally:
        for block in blocks:
            if mode == "stg-a":
                block.attn1.set_processor(OpenSoraAttnProcessor())
            else:
                del block.forward


class PlainReference(torch.nn.Module):
    """The guided velocity, one forward per pass: eps_u + w (eps_c - eps_u) + s (eps_c - eps_sp) + s_t (eps_c - eps_t),
    rescaled toward std(eps_c) per row; plugged into the stock pipeline with its own CFG off."""

    def __init__(self, transformer, guidance: stg.Guidance, null: torch.Tensor):
        super().__init__()
        self.transformer, self.g, self.null = transformer, guidance, null

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.transformer, name)

    def forward(self, encoder_hidden_states, return_dict=False, **inputs):
        g, model = self.g, self.transformer
        run = lambda text: model(encoder_hidden_states=text, **inputs).sample  # noqa: E731
        eps_c, eps_u = run(encoder_hidden_states), run(self.null)
        passes = []
        for scale, blocks, stack in [(g.stg_scale, g.stg_blocks, model.spatial_blocks),
                                     (g.temporal_stg_scale, g.temporal_stg_blocks, model.temporal_blocks)]:
            if scale:
                with perturbed([stack[k] for k in blocks], g.stg_mode):
                    passes.append((scale, run(encoder_hidden_states)))
        return (guided(eps_u, eps_c, g.cfg_scale, passes, g.rescale),)


def reference_latents(stock, guidance: stg.Guidance) -> torch.Tensor:
    null = stock.transformer.y_embedding[None]
    pipe = OpenSoraPipeline(**{**stock.components, "transformer": PlainReference(stock.transformer, guidance, null)})
    pipe.set_progress_bar_config(disable=True)
    return stock_latents(pipe, 1.0)


PASSES = {"spatial": dict(stg_scale=1.0, stg_blocks=[1]),
          "temporal": dict(temporal_stg_scale=1.5, temporal_stg_blocks=[2]),
          "both": dict(stg_scale=1.0, stg_blocks=[1], temporal_stg_scale=0.5, temporal_stg_blocks=[0, 3])}


@every_pass_mode_and_rescale(PASSES)
def test_stg_equals_the_plain_reference(opensora, passes, mode, rescale):
    backend, stock = opensora
    guidance = stg.Guidance(4.0, stg_mode=mode, rescale=rescale, **PASSES[passes])
    reference = reference_latents(stock, guidance)
    assert_relatively_close(our_latents(backend, [guidance]), reference)
    assert (reference - stock_latents(stock, 4.0)).abs().max() > 1e-3  # the perturbed passes reach the result


def test_a_comparison_batches_both_panels_exactly(opensora):
    """CFG beside CFG + spatial and temporal STG in one run: each panel as when run alone, the CFG one stock."""
    backend, stock = opensora
    both = stg.Guidance(4.0, stg_mode="stg-a", **PASSES["both"])
    latents = our_latents(backend, [stg.Guidance(4.0), both])
    assert_relatively_close(latents[:1], stock_latents(stock, 4.0))
    assert_relatively_close(latents[1:], reference_latents(stock, both))


@pytest.mark.parametrize("layers", ["spatial", "temporal", "both"])
def test_block_explorer_sweeps_either_kind(opensora, layers):
    """One panel per block number; each perturbs that block of the kind asked for and changes the video."""
    backend, _ = opensora
    candidate = stg.Guidance(4.0, stg_mode="stg-a", **PASSES["both"])
    panels = backend.sweep_panels(stg.Guidance(4.0), candidate, [1, 3], layers=layers)
    videos = backend.run(PROMPT, panels, seed=SEED, steps=2, **SIZE)
    assert len(videos) == 3
    for video in videos[1:]:
        assert np.abs(video.frames.astype(float) - videos[0].frames).max() > 0


def test_a_step_cache_is_refused_by_name(opensora):
    """Its spatial and temporal blocks interleave: no stack of them can be skipped as one, so `cache` is refused
    before any work, and no block carries a cache hook."""
    backend, _ = opensora
    with pytest.raises(ValueError, match="cache must be 0 on open-sora: its spatial and temporal layers interleave"):
        backend.generate(PROMPT, stg.Guidance(4.0), seed=SEED, steps=2, cache=0.1, **SIZE)
    blocks = backend.pipe.transformer.spatial_blocks
    assert all(getattr(b, "_diffusers_hook", None) is None or b._diffusers_hook.get_hook("stg_step_cache") is None
               for b in blocks)


@pytest.mark.parametrize("passes", [dict(stg_blocks=[2], temporal_stg_blocks=[2]),
                                    dict(stg_blocks=[3], temporal_stg_blocks=[1])], ids=["pair-2", "temporal-first"])
def test_perturbed_rows_share_the_blocks_before_their_first_perturbed_one_exactly(opensora, passes):
    """A perturbed row joins the batch at the pair (spatial block k, temporal block k) of its first perturbed layer:
    the pairs before it run once for it and its conditional twin (their feed-forward sees the rows that run); the
    result is the plain computation's."""
    backend, _ = opensora
    transformer = backend.pipe.transformer
    panels = [stg.Guidance(4.0), stg.Guidance(4.0, 1.0, "stg-a", temporal_stg_scale=0.5, **passes)]
    stacks = (transformer.spatial_blocks, transformer.temporal_blocks)
    rows = {id(block): [] for stack in stacks for block in stack}
    handles = [block.ff.register_forward_pre_hook(lambda m, args, block=block: rows[id(block)].append(args[0].shape[0]))
               for stack in stacks for block in stack]
    everything = []  # the rows of each transformer call
    handles.append(transformer.register_forward_pre_hook(
        lambda m, args, kwargs: everything.append(kwargs["hidden_states"].shape[0]), with_kwargs=True))
    try:
        shared = our_latents(backend, panels)
    finally:
        for handle in handles:
            handle.remove()
    total = everything[0]
    assert everything == [total] * STEPS
    firsts = [passes["stg_blocks"][0], passes["temporal_stg_blocks"][0]]  # of the spatial row, the temporal row
    for kind, stack in enumerate(stacks):
        for index, block in enumerate(stack):
            waiting = sum(first > index for first in firsts)
            assert rows[id(block)] == [total - waiting] * STEPS, (kind, index)
    pipe, kwargs, _ = backend.prepare(PROMPT, panels, seed=SEED, steps=STEPS, share_prefix=False, max_rows=1, **SIZE)
    assert_relatively_close(shared, pipe(**{**kwargs, "output_type": "latent"}).frames)
