"""The batched denoising step: every pass of every panel in one transformer forward.

The stock pipeline runs with its own CFG switched off and one latent row per panel; it calls this object
as its transformer. Per step it expands each panel into the rows it needs (uncond, cond, perturbed),
runs them through the shared transformer with a per-row perturbation plan, and returns each panel's
guided prediction, which the pipeline's scheduler then steps as usual.
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from .families import Family
from .guidance import Guidance, guide
from .perturb import RowPerturbation, RowPlan, perturbed

UNCOND, COND, PERTURBED = "uncond", "cond", "perturbed"


@dataclass(frozen=True)
class Row:
    panel: int
    kind: str


def plan_rows(panels: Sequence[Guidance], step: int, steps: int, cfg_pass: bool) -> list[Row]:
    """Rows of one step: uncond only where CFG is on, perturbed only inside the STG window."""
    rows = []
    for j, g in enumerate(panels):
        if cfg_pass and g.cfg_scale != 1.0:
            rows.append(Row(j, UNCOND))
        rows.append(Row(j, COND))
        if g.stg_active(step, steps):
            rows.append(Row(j, PERTURBED))
    return rows


def passes_per_step(panels: Sequence[Guidance], steps: int, depth: int, cfg_pass: bool,
                    share_prefix: bool = True) -> float:
    """Transformer passes one step of these panels costs, averaged over the steps: the rows `plan_rows` plans,
    a perturbed row from its first perturbed block k on costing (depth - k) / depth with the shared prefix."""
    total = 0.0
    for step in range(steps):
        for row in plan_rows(panels, step, steps, cfg_pass):
            first = min(panels[row.panel].stg_blocks) if row.kind == PERTURBED and share_prefix else 0
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


class GuidedDenoiser:
    """Stands in for the pipeline's transformer for one request; everything else is delegated to it."""

    def __init__(self, transformer, family: Family, panels: Sequence[Guidance], negative: dict, steps: int,
                 share_prefix: bool = True, max_rows: int | None = None):
        self.transformer = transformer
        self.family = family
        self.panels = list(panels)
        self.negative = negative
        self.steps = steps
        self.share_prefix = share_prefix
        self.max_rows = max_rows
        self.step = 0
        self._signature = inspect.signature(transformer.forward)

    def __getattr__(self, name):
        return getattr(self.transformer, name)

    def cache_context(self, name, **kwargs):
        """The pipeline's cache bookkeeping would write to the shared model; this request has none."""
        return nullcontext()

    def __call__(self, *args, **kwargs):
        inputs = self._signature.bind(*args, **kwargs).arguments
        return_dict = inputs.pop("return_dict", True)
        rows = plan_rows(self.panels, self.step, self.steps, self.family.has_cfg_pass)
        outputs = self._forward_rows(rows, inputs)
        guided = torch.cat([
            guide(outputs[Row(j, COND)], outputs.get(Row(j, UNCOND)), outputs.get(Row(j, PERTURBED)), g)
            for j, g in enumerate(self.panels)
        ])
        self.step += 1
        return Transformer2DModelOutput(sample=guided) if return_dict else (guided,)

    def _forward_rows(self, rows: list[Row], inputs: dict) -> dict[Row, torch.Tensor]:
        """All rows, in as few forwards as fit: out of memory halves the rows per forward and retries."""
        while True:
            max_rows = min(self.max_rows or len(rows), len(rows))
            try:
                outputs = {}
                for chunk in chunk_rows(rows, max_rows):
                    outputs.update(zip(chunk, self._forward(chunk, inputs).split(1)))
                return outputs
            except torch.OutOfMemoryError:
                if max_rows == 1:
                    raise
                outputs = None  # drop partial results so their memory can be returned
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self.max_rows = max_rows // 2

    def _forward(self, rows: list[Row], inputs: dict) -> torch.Tensor:
        panels = inputs["hidden_states"].shape[0]
        device = inputs["hidden_states"].device
        index = torch.tensor([r.panel for r in rows], device=device)
        batch = {
            k: v.index_select(0, index) if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == panels else v
            for k, v in inputs.items()
        }
        uncond = torch.tensor([r.kind == UNCOND for r in rows], device=device)
        if uncond.any():
            for source, target in self.family.prompt_inputs.items():
                negative = self.negative[source].to(batch[target])
                batch[target] = torch.where(uncond.view(-1, *[1] * (negative.ndim - 1)), negative, batch[target])
        if self.family.embedded_guidance:
            name, factor = self.family.embedded_guidance
            scales = [self.panels[r.panel].cfg_scale * factor for r in rows]
            batch[name] = torch.tensor(scales, device=device, dtype=batch[name].dtype)
        plan = self._perturbation_plan(rows)
        with perturbed(plan):
            out = self.transformer(**batch, return_dict=False)[0]
        return out.float()

    def _perturbation_plan(self, rows: list[Row]) -> RowPlan | None:
        if not any(r.kind == PERTURBED for r in rows):
            return None
        position = {r: k for k, r in enumerate(rows)}
        plan = []
        for r in rows:
            if r.kind != PERTURBED:
                plan.append(None)
                continue
            g = self.panels[r.panel]
            source = position.get(Row(r.panel, COND)) if self.share_prefix else None
            plan.append(RowPerturbation(g.stg_mode, frozenset(g.stg_blocks), source))
        return RowPlan(plan)
