"""Step cache, row by row: a row whose first block changed little since the last step it ran in full skips the rest
of the block stack and adds what the stack added then.

The rule is First-Block Cache's (ParaAttention, https://github.com/chengzeyi/ParaAttention, README "First Block
Cache"; diffusers `hooks/first_block_cache.py`), a simpler form of TeaCache (Liu et al., "Timestep Embedding Tells:
It's Time to Cache for Video Diffusion Model", arXiv 2411.19108): the first block always runs; its residual (output
minus input) is compared with the residual of the last step that ran the whole stack, and where the mean absolute
change relative to that residual's mean magnitude is below the threshold, blocks 1 to N-1 are replaced by the
residual they added then (last block's output minus first block's output). TeaCache's polynomial and MagCache's
magnitude ratios are fitted per model; this rule needs nothing fitted, so it holds for every family here.

diffusers' hook decides for a whole batch and keeps one state per model: a batch carrying several panels and
perturbed rows would mix them. Here the decision is per row, remembered per (panel, row kind) in one cache per
request and expert, and only for the duration of that request's forwards (a `ContextVar`), so concurrent requests on
the shared model never see each other's. Rows that run are still batched in one forward; a perturbed row still
shares its prefix with its conditional twin where the twin runs (where the twin is reused, it computes the prefix
itself, which equals the twin's: same inputs).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

import torch
from diffusers.hooks import HookRegistry, ModelHook

from .perturb import BlockStack, RowPlan, _take_rows, perturbed

CACHE_HOOK = "stg_step_cache"


class StepCache:
    """One request's cache for one transformer: per row (panel, kind), the first block's residual and what blocks
    1 to N-1 added, as of the last step that row ran in full.

    threshold: reuse where the relative change of the first block's residual is below it (0: never).
    kinds: the row kinds it may reuse (None: all).
    """

    def __init__(self, threshold: float, kinds: frozenset[str] | None = None):
        self.threshold = threshold
        self.kinds = kinds
        self._memory: dict = {}
        self._staged: dict = {}  # this step's, kept apart until the whole step has run (a retried step starts over)
        self._reused: set = set()

    @contextmanager
    def forward(self, rows: list, plan: RowPlan | None):
        """Cache the forward passes run inside this block; rows: one hashable key with a `kind` per batch row."""
        token = _FORWARD.set(_Forward(self, list(rows), plan))
        try:
            yield
        finally:
            _FORWARD.reset(token)

    def commit(self) -> set:
        """The step's forwards have all run: what they computed is what later steps compare with. Returns the rows
        this step reused."""
        reused, self._reused = self._reused, set()
        for row, (probe, tails) in self._staged.items():
            self._memory[row] = (probe, tails)
        self._staged.clear()
        return reused

    def discard(self) -> None:
        """The step's forwards are run again (fewer rows at a time): forget what they staged."""
        self._staged.clear()
        self._reused.clear()

    def _reusable(self, row, probe: torch.Tensor) -> tuple | None:
        """What blocks 1 to N-1 added the last time this row ran them, where the first block changed little since."""
        memory = self._memory.get(row)
        if memory is None or (self.kinds is not None and row.kind not in self.kinds):
            return None
        before, tails = memory
        scale = before.float().abs().mean()
        if not scale > 0:  # a row that skips the first block (stg-r at block 0) has no measure of change
            return None
        change = (probe.float() - before.float()).abs().mean() / scale
        return tails if change.item() < self.threshold else None


@dataclass
class _Forward:
    """One forward pass under a cache: which rows run blocks 1 to N-1, and the first block's outputs."""

    cache: StepCache
    rows: list
    plan: RowPlan | None
    head: list | None = None  # the first block's outputs, per stream, before any reuse
    running: torch.Tensor | None = None  # rows that run blocks 1 to N-1; None: all of them
    running_plan: RowPlan | None = None  # the perturbation plan of those rows alone


_FORWARD: ContextVar[_Forward | None] = ContextVar("stg_step_cache", default=None)


def _restricted(plan: RowPlan | None, rows: list[int]) -> RowPlan | None:
    """The plan of some of its rows; a shared prefix whose source row is left out is computed by its own row."""
    if plan is None:
        return None
    position = {row: k for k, row in enumerate(rows)}
    kept = []
    for row in rows:
        p = plan.rows[row]
        if p is not None and p.source_row is not None:
            p = replace(p, source_row=position.get(p.source_row))
        kept.append(p)
    return RowPlan(kept) if any(p is not None for p in kept) else None


class CacheHook(ModelHook):
    """On the first block: decides per row. On the others: runs the rows not reused. On the last: remembers what the
    stack added to the rows that ran."""

    def __init__(self, index: int, depth: int, spec: BlockStack):
        super().__init__()
        self.index, self.depth, self.spec = index, depth, spec

    def initialize_hook(self, module):
        self.signature = inspect.signature(module.forward)
        return module

    def new_forward(self, module, *args, **kwargs):
        forward = _FORWARD.get()
        if forward is None:
            return self.fn_ref.original_forward(*args, **kwargs)
        bound = self.signature.bind(*args, **kwargs)
        inputs = [bound.arguments.get(name) for name in self.spec.outputs]
        if self.index == 0:
            output = self.fn_ref.original_forward(*args, **kwargs)
            streams = self._streams(output)
            forward.head = streams
            streams = self._decide(forward, streams[0] - inputs[0], streams)
        else:
            streams = self._run(forward, bound, inputs)
        if self.index == self.depth - 1:
            self._remember(forward, streams)
        return tuple(streams) if len(streams) > 1 else streams[0]

    def _streams(self, output) -> list:
        streams = list(output) if isinstance(output, tuple) else [output]
        if len(streams) != len(self.spec.outputs):
            raise RuntimeError(f"a block returned {len(streams)} outputs, its stack names {self.spec.outputs}")
        return streams

    @staticmethod
    def _decide(forward: _Forward, residual: torch.Tensor, streams: list) -> list:
        """Reused rows get what the rest of the stack added the last time; the others run on."""
        cache, reused = forward.cache, {}
        for i, row in enumerate(forward.rows):
            tails = cache._reusable(row, residual[i:i + 1])
            if tails is None:
                cache._staged[row] = (residual[i:i + 1].clone(), None)
            else:
                reused[i] = tails
                cache._reused.add(row)
        if not reused:
            return streams
        running = [i for i in range(len(forward.rows)) if i not in reused]
        forward.running = torch.tensor(running, dtype=torch.long, device=residual.device)
        forward.running_plan = _restricted(forward.plan, running)
        streams = [s.clone() if s is not None else None for s in streams]
        for i, tails in reused.items():
            for stream, tail in zip(streams, tails):
                if stream is not None:
                    stream[i:i + 1] += tail.to(stream.dtype)
        return streams

    def _run(self, forward: _Forward, bound, inputs: list) -> list:
        """This block on the rows that run; reused rows keep what they have."""
        if forward.running is None:
            return self._streams(self.fn_ref.original_forward(*bound.args, **bound.kwargs))
        if not len(forward.running):
            return list(inputs)
        for name in self.spec.row_inputs:
            if name in bound.arguments:
                bound.arguments[name] = _take_rows(bound.arguments[name], forward.running)
        with perturbed(forward.running_plan):
            computed = self._streams(self.fn_ref.original_forward(*bound.args, **bound.kwargs))
        merged = []
        for full, part in zip(inputs, computed):
            merged.append(None if part is None else full.to(part.dtype).index_copy(0, forward.running, part))
        return merged

    @staticmethod
    def _remember(forward: _Forward, streams: list) -> None:
        """What blocks 1 to N-1 added to each row that ran them."""
        cache = forward.cache
        for i, row in enumerate(forward.rows):
            staged = cache._staged.get(row)
            if row in cache._reused or staged is None:
                continue
            tails = tuple(None if s is None else s[i:i + 1] - h[i:i + 1] for s, h in zip(streams, forward.head))
            cache._staged[row] = (staged[0], tails)


def install(transformer: torch.nn.Module, spec: BlockStack) -> None:
    """Attach the inert cache hooks to every block, outside the perturbation's (once per model, after
    `perturb.install`). A stack of one block has nothing to skip; blocks spread over a model (a UNet's, with
    resnets between them) are no stack whose first block stands for the rest: neither is cached."""
    blocks = spec.blocks(transformer)
    if not isinstance(spec.stack, str) or len(blocks) < 2:
        return
    for index, block in enumerate(blocks):
        registry = HookRegistry.check_if_exists_or_initialize(block)
        if registry.get_hook(CACHE_HOOK) is None:
            registry.register_hook(CacheHook(index, len(blocks), spec), CACHE_HOOK)
