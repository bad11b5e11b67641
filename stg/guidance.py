"""The STG guidance formula, as pure tensor functions (no model).

eps = eps_u + w (eps_c - eps_u) + s (eps_c - eps_p), optionally rescaled toward std(eps_c).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

MODES = {
    "stg-r": "residual skip: each chosen block returns its input unchanged",
    "stg-a": "attention skip: the chosen blocks' video self-attention uses an identity map",
}
MAX_SCALE = 100.0


def _check_number(field: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{field} must be a finite number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _check_blocks(blocks) -> tuple[int, ...]:
    if isinstance(blocks, (int, str)) or not isinstance(blocks, Sequence):
        raise ValueError(f"stg_blocks must be a list of block indices (integers), got {blocks!r}")
    if any(isinstance(b, bool) or not isinstance(b, int) for b in blocks):
        raise ValueError(f"stg_blocks must contain integers only, got {list(blocks)!r}")
    if any(b < 0 for b in blocks):
        raise ValueError(f"stg_blocks must be non-negative block indices, got {list(blocks)!r}")
    return tuple(sorted(set(blocks)))


@dataclass(frozen=True)
class Guidance:
    """Guidance settings of one video panel. Validated on construction, before any model work."""

    cfg_scale: float
    stg_scale: float = 0.0
    stg_mode: str = "stg-r"
    stg_blocks: Sequence[int] = ()
    rescale: float = 0.0
    window: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "cfg_scale", _check_number("cfg_scale", self.cfg_scale, 0.0, MAX_SCALE))
        set_(self, "stg_scale", _check_number("stg_scale", self.stg_scale, 0.0, MAX_SCALE))
        if self.stg_mode not in MODES:
            raise ValueError(f"stg_mode must be one of {', '.join(MODES)}, got {self.stg_mode!r}")
        set_(self, "stg_blocks", _check_blocks(self.stg_blocks))
        set_(self, "rescale", _check_number("rescale", self.rescale, 0.0, 1.0))
        if not isinstance(self.window, Sequence) or len(self.window) != 2:
            raise ValueError(f"window must be a pair (start, end) of fractions in [0, 1], got {self.window!r}")
        start = _check_number("window start", self.window[0], 0.0, 1.0)
        end = _check_number("window end", self.window[1], 0.0, 1.0)
        if start >= end:
            raise ValueError(f"window start must be less than window end (both in [0, 1]), got {start:g} >= {end:g}")
        set_(self, "window", (start, end))

    @property
    def uses_stg(self) -> bool:
        """STG needs a scale and at least one block; without either the panel is plain CFG."""
        return self.stg_scale > 0 and bool(self.stg_blocks)

    def stg_active(self, step: int, steps: int) -> bool:
        """Whether the perturbed pass runs at this step: step/steps inside [start, end)."""
        start, end = self.window
        return self.uses_stg and start * steps <= step < end * steps

    def check_depth(self, depth: int) -> None:
        bad = [b for b in self.stg_blocks if b >= depth]
        if bad:
            raise ValueError(f"stg_blocks {bad} out of range: this model has {depth} blocks, allowed 0-{depth - 1}")

    def as_dict(self) -> dict:
        data = asdict(self)
        data["stg_blocks"] = list(self.stg_blocks)
        data["window"] = list(self.window)
        return data


def guide(eps_c: torch.Tensor, eps_u: torch.Tensor | None, eps_p: torch.Tensor | None, g: Guidance) -> torch.Tensor:
    """Combine the passes of one panel; a missing pass (None) contributes no term."""
    eps = eps_c if eps_u is None else eps_u + g.cfg_scale * (eps_c - eps_u)
    if eps_p is not None:
        eps = eps + g.stg_scale * (eps_c - eps_p)
    if g.rescale > 0:
        dims = list(range(1, eps.ndim))  # per sample: factor = std(eps_c) / std(eps)
        factor = eps_c.std(dim=dims, keepdim=True) / eps.std(dim=dims, keepdim=True)
        eps = eps * (g.rescale * factor + (1 - g.rescale))
    return eps
