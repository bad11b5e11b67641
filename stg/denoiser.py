"""The batched denoising step: every pass of every panel in one transformer forward.

The stock pipeline runs with its own guidance switched off and one latent row per panel; it calls this object
as its transformer (one per expert, where a model has two). Per step it expands each panel into the rows it
needs (uncond, cond, perturbed, isolated), runs them through the shared transformer with a per-row
perturbation plan, and returns each panel's guided prediction of every output (video, and sound where the
model makes it), which the pipeline's scheduler then steps as usual.
"""

from __future__ import annotations

import inspect
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from .cache import StepCache
from .families import Family
from .guidance import Guidance, guide
from .perturb import TEMPORAL as TEMPORAL_LAYERS
from .perturb import RowPerturbation, RowPlan, perturbed

# TEMPORAL: the second perturbed pass of a model with factorized attention (its temporal layers perturbed).
UNCOND, COND, PERTURBED, ISOLATED, TEMPORAL = "uncond", "cond", "perturbed", "isolated", "temporal"
KINDS = (UNCOND, COND, PERTURBED, ISOLATED, TEMPORAL)


@dataclass(frozen=True)
class Row:
    panel: int
    kind: str


def plan_rows(panels: Sequence[Guidance], step: int, steps: int, cfg_pass: bool) -> list[Row]:
    """Rows of one step: uncond only where CFG is on, perturbed (and temporal) only inside the STG window, isolated
    only with modality guidance."""
    rows = []
    for j, g in enumerate(panels):
        if cfg_pass and g.uses_cfg:
            rows.append(Row(j, UNCOND))
        rows.append(Row(j, COND))
        if g.stg_active(step, steps):
            rows.append(Row(j, PERTURBED))
        if g.temporal_stg_active(step, steps):
            rows.append(Row(j, TEMPORAL))
        if g.uses_modality:
            rows.append(Row(j, ISOLATED))
    return rows


def passes_per_step(panels: Sequence[Guidance], steps: int, depth: int, cfg_pass: bool,
                    share_prefix: bool = True) -> float:
    """Transformer passes one step of these panels costs, averaged over the steps: the rows `plan_rows` plans,
    a perturbed row from its first perturbed block k on costing (depth - k) / depth with the shared prefix."""
    total = 0.0
    for step in range(steps):
        for row in plan_rows(panels, step, steps, cfg_pass):
            blocks = {PERTURBED: panels[row.panel].stg_blocks, TEMPORAL: panels[row.panel].temporal_stg_blocks}
            first = min(blocks[row.kind]) if row.kind in blocks and share_prefix else 0
            total += (depth - first) / depth
    return total / steps


def chunk_rows(rows: list[Row], max_rows: int) -> list[list[Row]]:
    """Split rows into forwards of at most max_rows, keeping a panel's rows together where they fit."""
    chunks: list[list[Row]] = [[]]
    for panel in sorted({r.panel for r in rows}):
        group = [r for r in rows if r.panel == panel]
        for start in range(0, len(group), max_rows):
            piece = group[start:start + max_rows]
            if len(chunks[-1]) + len(piece) > max_rows:
                chunks.append([])
            chunks[-1].extend(piece)
    return [c for c in chunks if c]


@dataclass
class Progress:
    """What the stand-ins of one request share: the step reached, the steps, and who hears of each step."""

    steps: int
    callback: Callable[[int, int], None] | None = None
    step: int = 0

    def advance(self) -> None:
        self.step += 1
        if self.callback is not None:
            self.callback(self.step, self.steps)


class GuidedDenoiser:
    """Stands in for one of the pipeline's transformers for one request; everything else is delegated to it.

    negative: transformer inputs of the negative prompt, by argument name. expert: which of the model's
    experts this transformer is (its panels use that expert's CFG scale). scheduler: the request's own, whose
    sigmas turn velocities into x0 for families that guide x0. cache: the request's step cache for this
    transformer (None: every row runs every block). `forwards` counts, per row, the steps it ran and reused.
    """

    def __init__(self, transformer, family: Family, panels: Sequence[Guidance], negative: dict, progress: Progress,
                 *, expert: int = 0, scheduler=None, share_prefix: bool = True, max_rows: int | None = None,
                 cache: StepCache | None = None):
        self.transformer = transformer
        self.family = family
        self.panels = [g.for_expert(expert) for g in panels]
        self.streams = [self.panels, [g.for_audio() for g in self.panels]][:len(family.samples)]
        self.negative = negative
        self.progress = progress
        self.scheduler = scheduler
        self.share_prefix = share_prefix
        self.max_rows = max_rows
        self.cache = cache
        self.forwards: Counter[tuple[Row, bool]] = Counter()
        self._signature = inspect.signature(transformer.forward)

    def __getattr__(self, name):
        return getattr(self.transformer, name)

    def cache_context(self, name, **kwargs):
        """The pipeline's cache bookkeeping would write to the shared model; this request has none."""
        return nullcontext()

    def __call__(self, *args, **kwargs):
        inputs = self._signature.bind(*args, **kwargs).arguments
        return_dict = inputs.pop("return_dict", True)
        step = self.progress.step
        rows = plan_rows(self.panels, step, self.progress.steps, self.family.has_cfg_pass)
        outputs = self._forward_rows(rows, inputs)
        reused = self.cache.commit() if self.cache is not None else set()
        self.forwards.update((row, row in reused) for row in rows)
        guided = tuple(
            torch.cat([self._guide(outputs, j, s, g, inputs, step) for j, g in enumerate(panels)])
            for s, panels in enumerate(self.streams)
        )
        self.progress.advance()
        return Transformer2DModelOutput(sample=guided[0]) if return_dict else guided

    def _guide(self, outputs: dict, panel: int, stream: int, g: Guidance, inputs: dict, step: int) -> torch.Tensor:
        """One panel's guided prediction of one output; x0 families combine x0 = sample - sigma v."""
        passes = {kind: outputs[Row(panel, kind)][stream] for kind in KINDS
                  if Row(panel, kind) in outputs}
        if not self.family.x0:
            return guide(passes[COND], passes.get(UNCOND), passes.get(PERTURBED), g, passes.get(ISOLATED),
                         passes.get(TEMPORAL), self._frame_scales(g, passes[COND]))
        sample = inputs[self.family.samples[stream]][panel:panel + 1].float()
        sigma = self.scheduler.sigmas[step]
        x0 = {kind: sample - v * sigma for kind, v in passes.items()}
        guided = guide(x0[COND], x0.get(UNCOND), x0.get(PERTURBED), g, x0.get(ISOLATED), x0.get(TEMPORAL))
        return (sample - guided) / sigma

    def _frame_scales(self, g: Guidance, eps: torch.Tensor) -> torch.Tensor | None:
        """A CFG scale per frame, shaped to broadcast over eps, where the model has them and the panel sets them."""
        axis = self.family.frame_axis
        if axis is None or g.min_guidance_scale is None:
            return None
        shape = [1] * eps.ndim
        shape[axis] = eps.shape[axis]
        return g.frame_scales(eps.shape[axis]).to(eps).view(shape)

    def _forward_rows(self, rows: list[Row], inputs: dict) -> dict[Row, tuple[torch.Tensor, ...]]:
        """All rows, in as few forwards as fit: out of memory halves the rows per forward and retries."""
        while True:
            max_rows = min(self.max_rows or len(rows), len(rows))
            try:
                outputs = {}
                for chunk in chunk_rows(rows, max_rows):
                    per_output = [out.split(1) for out in self._forward(chunk, inputs)]
                    outputs.update(zip(chunk, zip(*per_output)))
                return outputs
            except torch.OutOfMemoryError:
                if max_rows == 1:
                    raise
                outputs = None  # drop partial results so their memory can be returned
                if self.cache is not None:
                    self.cache.discard()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self.max_rows = max_rows // 2

    def _forward(self, rows: list[Row], inputs: dict) -> tuple[torch.Tensor, ...]:
        panels = inputs[self.family.samples[0]].shape[0]
        device = inputs[self.family.samples[0]].device
        index = torch.tensor([r.panel for r in rows], device=device)
        batch = {
            k: v.index_select(0, index) if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == panels else v
            for k, v in inputs.items()
        }
        uncond = torch.tensor([r.kind == UNCOND for r in rows], device=device)
        if uncond.any():
            negatives = self.family.unconditional(batch) if self.family.unconditional else self.negative
            for target, negative in negatives.items():
                negative = negative.to(batch[target])
                batch[target] = torch.where(uncond.view(-1, *[1] * (negative.ndim - 1)), negative, batch[target])
        if self.family.embedded_guidance:
            name, factor = self.family.embedded_guidance
            scales = [self.panels[r.panel].cfg_scale * factor for r in rows]
            batch[name] = torch.tensor(scales, device=device, dtype=batch[name].dtype)
        plan = self._perturbation_plan(rows)
        cached = self.cache.forward(rows, plan) if self.cache is not None else nullcontext()
        with perturbed(plan), cached:
            out = self.transformer(**batch, return_dict=False)
        return tuple(o.float() for o in out[:len(self.family.samples)])

    def _perturbation_plan(self, rows: list[Row]) -> RowPlan | None:
        if all(r.kind in (UNCOND, COND) for r in rows):
            return None
        position = {r: k for k, r in enumerate(rows)}
        plan = []
        for r in rows:
            g = self.panels[r.panel]
            source = position.get(Row(r.panel, COND)) if self.share_prefix else None
            if r.kind == PERTURBED:
                plan.append(RowPerturbation(g.stg_mode, frozenset(g.stg_blocks), source))
            elif r.kind == TEMPORAL:
                plan.append(RowPerturbation(g.stg_mode, frozenset(g.temporal_stg_blocks), source, kind=TEMPORAL_LAYERS))
            else:
                plan.append(RowPerturbation(isolate=True) if r.kind == ISOLATED else None)
        return RowPlan(plan)
