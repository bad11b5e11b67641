"""Per-row block perturbation (stg-r, stg-a) through diffusers hooks.

Hooks are installed once, when the model is loaded, and stay inert: a call perturbs only while a
`RowPlan` is active in its own context (a `ContextVar`), so concurrent requests on one shared model never
see each other's settings, and nothing on the model changes per request. A plan names, per batch row,
the mode and the blocks to perturb; unperturbed rows of the same forward pass are left as they are.

A perturbed row may also name a source row (its conditional twin, same inputs): blocks before its first
perturbed block are then computed once for both and copied, which is exact because the inputs are equal.

A row may instead be isolated (LTX-2's modality guidance): in every block the cross-attention between video
and sound adds nothing to it, exactly as the model's own `isolate_modalities` does for a whole batch.

A model with factorized attention has a second kind of layer (TEMPORAL: SVD's temporal transformer blocks), hooked
the same way; a row's perturbation names the kind its blocks are numbered in. Inside a block, a row of the forward
may be a contiguous group of entries (a UNet's blocks see rows x frames, or rows x pixels): every per-row choice is
spread over its group. Where the layers sit inside larger stages that also hold convolutions (a UNet's down, mid and
up blocks), a whole stage before a row's first perturbed layer is shared with its source row as a block is.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from diffusers.hooks import HookRegistry, ModelHook

BLOCK_HOOK = "stg_block"
ATTENTION_HOOK = "stg_attention"
ISOLATION_HOOK = "stg_isolation"
STAGE_HOOK = "stg_stage"
# The kinds of layer: the model's main block stack, and a factorized model's temporal one.
MAIN, TEMPORAL = "main", "temporal"


@dataclass(frozen=True)
class BlockStack:
    """Where STG acts in a transformer: the family's data for the hooks."""

    # Attribute holding the block list; or dotted paths to the blocks ("*": every entry of a list), in the order
    # the model runs them (a UNet: down, mid, up), where they are spread over the model.
    stack: str | tuple[str, ...]
    attention: str  # attribute of a block holding its video self-attention
    row_inputs: tuple[str, ...]  # block arguments that carry one entry per batch row
    outputs: tuple[str, ...]  # block outputs, named by the input they update (dual-stream: two)
    # The block's own stg-a: an argument taking a per-row mask (0: value passthrough) instead of the hook.
    identity_argument: str | None = None
    # Attentions of a block whose output an isolated row does without (video <-> sound cross-attention).
    isolation: tuple[str, ...] = ()

    def blocks(self, transformer: torch.nn.Module) -> Sequence[torch.nn.Module]:
        if isinstance(self.stack, str):
            return getattr(transformer, self.stack)
        return [block for path in self.stack for block in _walk(transformer, path.split("."))]


@dataclass(frozen=True)
class Stages:
    """The larger stages a model's layers sit in, which run whole rows with their own convolutions between the
    layers (a UNet's down, mid and up blocks): family data for the hooks that share them."""

    paths: tuple[str, ...]  # dotted paths to the stages, in the order the model runs them
    row_inputs: tuple[str, ...]  # stage arguments that carry one entry (or group of entries) per batch row


def _walk(module: torch.nn.Module, path: list[str]):
    """The modules at a dotted path below module, in order; a name a module lacks (or holds None) yields nothing."""
    if not path:
        yield module
        return
    head, rest = path[0], path[1:]
    children = list(module) if head == "*" else [getattr(module, head, None)]
    for child in children:
        if child is not None:
            yield from _walk(child, rest)


@dataclass(frozen=True)
class RowPerturbation:
    """How one batch row is perturbed."""

    mode: str | None = None  # "stg-r" or "stg-a"
    blocks: frozenset[int] = frozenset()
    source_row: int | None = None  # row with identical inputs whose prefix blocks this row reuses
    isolate: bool = False  # no cross-attention between video and sound, in every block
    kind: str = MAIN  # the kind of layer `blocks` are numbered in

    @property
    def first_block(self) -> int:
        return min(self.blocks, default=0)


@dataclass(frozen=True)
class BlockAction:
    """What one block does to a batch: compute some rows, copy or pass through the others."""

    compute: torch.Tensor  # rows the block runs on
    gather: torch.Tensor  # for each row, its output's position among the computed rows
    passthrough: torch.Tensor | None  # bool per row: returns its input (stg-r)
    identity_attention: torch.Tensor | None  # bool per computed row: identity attention map (stg-a)
    isolated: torch.Tensor | None  # bool per computed row: isolated from the other modality


@dataclass
class RowPlan:
    """Per-row perturbations for one forward pass; None rows are left alone."""

    rows: Sequence[RowPerturbation | None]
    _actions: dict = field(default_factory=dict, repr=False)

    def action(self, index: int, device: torch.device, kind: str = MAIN) -> BlockAction | None:
        if (kind, index) not in self._actions:
            self._actions[kind, index] = self._build_action(index, device, kind)
        return self._actions[kind, index]

    def stage(self, ends: dict[str, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, RowPlan] | None:
        """How a stage holding each kind's layers before `ends[kind]` runs: the rows it computes, each row's position
        among them, and the plan of the computed rows inside it."""
        key = ("stage", tuple(sorted(ends.items())))
        if key not in self._actions:
            self._actions[key] = self._build_stage(ends, device)
        return self._actions[key]

    def _build_stage(self, ends: dict[str, int], device: torch.device):
        # A row with a source shares the stage when none of its perturbed layers is in it or before it.
        alias = [p.source_row if p is not None and p.source_row is not None and ends[p.kind] <= p.first_block else row
                 for row, p in enumerate(self.rows)]
        if alias == list(range(len(self.rows))):
            return None
        compute = [r for r, a in enumerate(alias) if a == r]
        position = {r: k for k, r in enumerate(compute)}
        inner = [p if p is None or p.source_row is None else replace(p, source_row=position[p.source_row])
                 for p in (self.rows[r] for r in compute)]
        as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
        return as_long(compute), as_long([position[a] for a in alias]), RowPlan(inner)

    def _build_action(self, index: int, device: torch.device, kind: str) -> BlockAction | None:
        alias, passthrough, identity, isolated = [], [], [], []
        for row, p in enumerate(self.rows):
            shares_prefix = p is not None and p.source_row is not None and index < p.first_block
            alias.append(p.source_row if shares_prefix else row)
            hit = p is not None and p.kind == kind and index in p.blocks
            passthrough.append(hit and p.mode == "stg-r")
            identity.append(hit and p.mode == "stg-a")
            isolated.append(p is not None and p.isolate)
        if alias == list(range(len(self.rows))) and not any(passthrough + identity + isolated):
            return None
        compute = [r for r, a in enumerate(alias) if a == r and not passthrough[r]]
        position = {r: k for k, r in enumerate(compute)}
        gather = [0 if passthrough[r] else position[alias[r]] for r in range(len(self.rows))]
        as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
        as_bool = lambda xs: torch.tensor(xs, dtype=torch.bool, device=device) if any(xs) else None  # noqa: E731
        return BlockAction(
            compute=as_long(compute),
            gather=as_long(gather),
            passthrough=as_bool(passthrough),
            identity_attention=as_bool([identity[r] for r in compute]),
            isolated=as_bool([isolated[r] for r in compute]),
        )


_PLAN: ContextVar[RowPlan | None] = ContextVar("stg_row_plan", default=None)
_IDENTITY_ROWS: ContextVar[torch.Tensor | None] = ContextVar("stg_identity_rows", default=None)
_ISOLATED_ROWS: ContextVar[torch.Tensor | None] = ContextVar("stg_isolated_rows", default=None)


@contextmanager
def perturbed(plan: RowPlan | None):
    """Activate a plan for the forward passes run inside this block (this thread/context only)."""
    token = _PLAN.set(plan)
    try:
        yield
    finally:
        _PLAN.reset(token)


def _groups(rows: torch.Tensor, size: int, count: int | None) -> torch.Tensor:
    """Indices of these rows' entries in a tensor of `size` entries, where each of the forward's `count` rows is a
    contiguous group of size / count entries (the rows themselves where count is None, size, or does not divide it)."""
    if count is None or size == count or size % count:
        return rows
    group = size // count
    return (rows[:, None] * group + torch.arange(group, device=rows.device)).reshape(-1)


def _take_rows(value, rows: torch.Tensor, count: int | None = None):
    if isinstance(value, torch.Tensor):
        return value.index_select(0, _groups(rows, value.shape[0], count))
    if isinstance(value, (tuple, list)):
        return type(value)(_take_rows(v, rows, count) for v in value)
    return value


class BlockHook(ModelHook):
    """Runs a block on the rows that need it; copies shared prefixes and passes stg-r rows through."""

    def __init__(self, index: int, spec: BlockStack, kind: str = MAIN):
        super().__init__()
        self.index = index
        self.spec = spec
        self.kind = kind

    def initialize_hook(self, module):
        self.signature = inspect.signature(module.forward)
        return module

    def new_forward(self, module, *args, **kwargs):
        plan = _PLAN.get()
        hidden = args[0] if args else kwargs["hidden_states"]
        action = plan.action(self.index, hidden.device, self.kind) if plan is not None else None
        if action is None:
            return self.fn_ref.original_forward(*args, **kwargs)
        count = len(plan.rows)
        bound = self.signature.bind(*args, **kwargs)
        inputs = {name: bound.arguments.get(name) for name in self.spec.outputs}
        if not len(action.compute):  # every row passes through: nothing to run
            passed = tuple(inputs[name] for name in self.spec.outputs)
            return passed if len(passed) > 1 else passed[0]
        for name in self.spec.row_inputs:
            if name in bound.arguments:
                bound.arguments[name] = _take_rows(bound.arguments[name], action.compute, count)
        identity = action.identity_attention
        if identity is not None and self.spec.identity_argument:
            # 0 perturbs a row; the model's processor then gives it exactly its value vectors.
            bound.arguments[self.spec.identity_argument] = (~identity).to(hidden.dtype).view(-1, 1, 1)
            identity = None
        tokens = _IDENTITY_ROWS.set(identity), _ISOLATED_ROWS.set(action.isolated)
        try:
            output = self.fn_ref.original_forward(*bound.args, **bound.kwargs)
        finally:
            _IDENTITY_ROWS.reset(tokens[0])
            _ISOLATED_ROWS.reset(tokens[1])
        outputs = output if isinstance(output, tuple) else (output,)
        merged = tuple(
            self._merge(out, inputs[name], action, count) for out, name in zip(outputs, self.spec.outputs)
        ) + outputs[len(self.spec.outputs):]
        return merged if isinstance(output, tuple) else merged[0]

    @staticmethod
    def _merge(computed, block_input, action: BlockAction, count: int):
        if computed is None:
            return None
        full = computed.index_select(0, _groups(action.gather, block_input.shape[0], count))
        if action.passthrough is not None:
            passthrough = action.passthrough.repeat_interleave(block_input.shape[0] // count)
            full[passthrough] = block_input[passthrough].to(full.dtype)
        return full


def _spread(value, gather: torch.Tensor, computed: int, count: int):
    """Every row's output (tensors, and tuples of them) from the output of the computed rows."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, _groups(gather, value.shape[0] // computed * count, count))
    if isinstance(value, (tuple, list)):
        return type(value)(_spread(v, gather, computed, count) for v in value)
    return value


class StageHook(ModelHook):
    """Runs a stage (with the layer hooks inside it under the computed rows' plan) on the rows that need it; a row
    that shares it gets its source row's output."""

    def __init__(self, ends: dict[str, int], row_inputs: tuple[str, ...]):
        super().__init__()
        self.ends = ends  # per kind of layer: the number of the first layer after this stage
        self.row_inputs = row_inputs

    def initialize_hook(self, module):
        self.signature = inspect.signature(module.forward)
        return module

    def new_forward(self, module, *args, **kwargs):
        plan = _PLAN.get()
        hidden = args[0] if args else kwargs["hidden_states"]
        found = plan.stage(self.ends, hidden.device) if plan is not None else None
        if found is None:
            return self.fn_ref.original_forward(*args, **kwargs)
        compute, gather, inner = found
        bound = self.signature.bind(*args, **kwargs)
        for name in self.row_inputs:
            if name in bound.arguments:
                bound.arguments[name] = _take_rows(bound.arguments[name], compute, len(plan.rows))
        with perturbed(inner):
            output = self.fn_ref.original_forward(*bound.args, **bound.kwargs)
        return _spread(output, gather, len(compute), len(plan.rows))


class IdentityAttentionHook(ModelHook):
    """stg-a: chosen rows' video tokens get their own value vector (identity map), then the output projection."""

    def initialize_hook(self, module):
        self.signature = inspect.signature(module.forward)
        return module

    def new_forward(self, module, *args, **kwargs):
        rows = _IDENTITY_ROWS.get()
        output = self.fn_ref.original_forward(*args, **kwargs)
        if rows is None:
            return output
        hidden = self.signature.bind(*args, **kwargs).arguments["hidden_states"]
        rows = rows.repeat_interleave(hidden.shape[0] // len(rows))  # a row's group of entries (frames, pixels)
        identity = module.to_v(hidden[rows])
        for layer in module.to_out:
            identity = layer(identity)
        video = output[0] if isinstance(output, tuple) else output
        video[rows] = identity.to(video.dtype)
        return output


class IsolationHook(ModelHook):
    """Isolated rows get nothing from this attention: its output is zero there, so the block adds nothing."""

    def new_forward(self, module, *args, **kwargs):
        output = self.fn_ref.original_forward(*args, **kwargs)
        rows = _ISOLATED_ROWS.get()
        if rows is None:
            return output
        return torch.where(rows.view(-1, *[1] * (output.ndim - 1)), torch.zeros_like(output), output)


def _attach(module: torch.nn.Module, hook: ModelHook, name: str) -> None:
    registry = HookRegistry.check_if_exists_or_initialize(module)
    if registry.get_hook(name) is None:
        registry.register_hook(hook, name)


def install(transformer: torch.nn.Module, spec: BlockStack, kind: str = MAIN) -> None:
    """Attach the inert hooks to every block of the stack (once per model); its blocks are numbered in `kind`."""
    for index, block in enumerate(spec.blocks(transformer)):
        _attach(block, BlockHook(index, spec, kind), BLOCK_HOOK)
        if not spec.identity_argument:
            _attach(getattr(block, spec.attention), IdentityAttentionHook(), ATTENTION_HOOK)
        for name in spec.isolation:
            _attach(getattr(block, name), IsolationHook(), ISOLATION_HOOK)


def install_stages(transformer: torch.nn.Module, stages: Stages, kinds: dict[str, BlockStack]) -> None:
    """Attach the inert stage hooks (once per model), each knowing the layers of each kind up to its end."""
    layers = {kind: {id(block) for block in spec.blocks(transformer)} for kind, spec in kinds.items()}
    ends = dict.fromkeys(kinds, 0)
    for stage in (module for path in stages.paths for module in _walk(transformer, path.split("."))):
        for kind in ends:
            ends[kind] += sum(id(module) in layers[kind] for module in stage.modules())
        _attach(stage, StageHook(dict(ends), stages.row_inputs), STAGE_HOOK)
