"""The STG guidance formula, as pure tensor functions (no model).

eps = eps_u + w (eps_c - eps_u) + s (eps_c - eps_p) + s_t (eps_c - eps_t) + (m - 1) (eps_c - eps_m), optionally
rescaled toward std(eps_c). eps_t is the temporal pass of a model with factorized attention (SVD's UNet: its
temporal layers perturbed, eps_p then perturbs its spatial ones); the last term is LTX-2's modality guidance (eps_m:
video and sound not attending to each other); s_t = 0 and m = 1 leave them out. w may be one scale per frame (SVD:
from min_guidance_scale on the first frame to cfg_scale on the last).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Sequence

from .values import sent

if TYPE_CHECKING:  # guide() needs only tensor methods: the settings table reads this module without torch
    import torch

MODES = {
    "stg-r": "residual skip: each chosen block returns its input unchanged",
    "stg-a": "attention skip: the chosen blocks' video self-attention uses an identity map",
}
# The range of each scale, for every surface. Stock pipelines switch CFG off at w <= 1 (those with a guider, at 1
# only), so a w below 1 mostly repeats w = 1 there: 1 is the smallest w (of the video, the sound or a second
# expert), and means CFG off.
CFG_SCALES = (1.0, 20.0)
STG_SCALES = (0.0, 10.0)
MODALITY_SCALES = (0.0, 20.0)
# Settings beyond CFG and STG, for the models that have what they act on; the presets set them.
EXTRAS = {
    "cfg_scale_2": "guidance scale w of the second (low-noise) expert, for models with two (Wan 2.2 A14B)",
    "modality_scale": "modality guidance m, away from video and sound that ignore each other (LTX-2); 1: off",
    "audio_cfg_scale": "guidance scale w of the sound (LTX-2)",
    "audio_stg_scale": "STG scale s of the sound (LTX-2)",
    "audio_modality_scale": "modality guidance m of the sound (LTX-2)",
    "audio_rescale": "rescale of the sound (LTX-2)",
    "min_guidance_scale": "guidance scale w of the first frame, rising linearly to w on the last (SVD)",
    "motion_bucket_id": "how much motion the video is conditioned on, 0 to 255 (SVD)",
    "noise_aug_strength": "noise added to the image before it conditions the video (SVD)",
    "decode_chunk_size": "frames the VAE decodes at once; fewer need less memory (SVD)",
}
# What a block sweep's candidate number names: on a model with factorized attention, a spatial layer, a temporal
# one or both; elsewhere, "spatial" is the model's block.
SWEEP_LAYERS = {"spatial": "the block (SVD: the spatial layer) alone", "temporal": "the temporal layer alone",
                "both": "the spatial and the temporal layer of that number"}
# Whole-number settings among EXTRAS, with their ranges.
WHOLE_EXTRAS = {"motion_bucket_id": (0, 255), "decode_chunk_size": (1, 1024)}
NOISE_AUG = (0.0, 1.0)


def _check_number(field: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{field} must be a finite number in [{low:g}, {high:g}], got {sent(value)}")
    return float(value)


def _check_optional(field: str, value, low: float, high: float) -> float | None:
    return None if value is None else _check_number(field, value, low, high)


def _check_whole(field: str, value, low: int, high: int) -> int | None:
    if value is None:
        return None
    whole = isinstance(value, int) or isinstance(value, float) and value.is_integer()
    if isinstance(value, bool) or not whole or not low <= value <= high:
        raise ValueError(f"{field} must be a whole number in [{low}, {high}], got {value!r}")
    return int(value)


def _check_blocks(blocks, field: str = "stg_blocks") -> tuple[int, ...]:
    if isinstance(blocks, (int, str)) or not isinstance(blocks, Sequence):
        raise ValueError(f"{field} must be a list of block indices (integers), got {blocks!r}")
    if any(isinstance(b, bool) or not isinstance(b, int) for b in blocks):
        raise ValueError(f"{field} must contain integers only, got {list(blocks)!r}")
    if any(b < 0 for b in blocks):
        raise ValueError(f"{field} must be non-negative block indices, got {list(blocks)!r}")
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
    cfg_scale_2: float | None = None
    modality_scale: float = 1.0
    audio_cfg_scale: float | None = None
    audio_stg_scale: float | None = None
    audio_modality_scale: float | None = None
    audio_rescale: float | None = None
    # The temporal pass of a model with factorized attention: its own scale and its temporal layers.
    temporal_stg_scale: float = 0.0
    temporal_stg_blocks: Sequence[int] = ()
    min_guidance_scale: float | None = None
    motion_bucket_id: int | None = None
    noise_aug_strength: float | None = None
    decode_chunk_size: int | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "cfg_scale", _check_number("cfg_scale", self.cfg_scale, *CFG_SCALES))
        set_(self, "stg_scale", _check_number("stg_scale", self.stg_scale, *STG_SCALES))
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
        set_(self, "modality_scale", _check_number("modality_scale", self.modality_scale, *MODALITY_SCALES))
        for name, scales in (("cfg_scale_2", CFG_SCALES), ("audio_cfg_scale", CFG_SCALES),
                             ("audio_stg_scale", STG_SCALES), ("audio_modality_scale", MODALITY_SCALES)):
            set_(self, name, _check_optional(name, getattr(self, name), *scales))
        set_(self, "audio_rescale", _check_optional("audio_rescale", self.audio_rescale, 0.0, 1.0))
        set_(self, "temporal_stg_scale", _check_number("temporal_stg_scale", self.temporal_stg_scale, *STG_SCALES))
        set_(self, "temporal_stg_blocks", _check_blocks(self.temporal_stg_blocks, "temporal_stg_blocks"))
        set_(self, "min_guidance_scale", _check_optional("min_guidance_scale", self.min_guidance_scale, *CFG_SCALES))
        set_(self, "noise_aug_strength", _check_optional("noise_aug_strength", self.noise_aug_strength, *NOISE_AUG))
        for name, (low, high) in WHOLE_EXTRAS.items():
            set_(self, name, _check_whole(name, getattr(self, name), low, high))

    def extras(self) -> dict:
        """The settings beyond CFG and STG that differ from their defaults (off, or following another)."""
        return {name: getattr(self, name) for name in EXTRAS if getattr(self, name) != _DEFAULTS[name]}

    def for_expert(self, expert: int) -> "Guidance":
        """The guidance of one expert of a two-expert model: the second uses cfg_scale_2 where given."""
        if expert == 0 or self.cfg_scale_2 is None:
            return self
        return replace(self, cfg_scale=self.cfg_scale_2, cfg_scale_2=None)

    def for_audio(self) -> "Guidance":
        """The guidance of the sound: the audio scales where given, else the video's."""
        follow = lambda audio, video: video if audio is None else audio  # noqa: E731
        return replace(
            self,
            cfg_scale=follow(self.audio_cfg_scale, self.cfg_scale),
            stg_scale=follow(self.audio_stg_scale, self.stg_scale),
            modality_scale=follow(self.audio_modality_scale, self.modality_scale),
            rescale=follow(self.audio_rescale, self.rescale),
            audio_cfg_scale=None, audio_stg_scale=None, audio_modality_scale=None, audio_rescale=None,
        )

    @property
    def uses_stg(self) -> bool:
        """STG needs a scale (of the video or the sound, or of the temporal pass) and at least one block of that
        pass; else the panel is plain CFG."""
        return (self.stg_scale > 0 or bool(self.audio_stg_scale)) and bool(self.stg_blocks) or self.uses_temporal_stg

    @property
    def uses_temporal_stg(self) -> bool:
        return self.temporal_stg_scale > 0 and bool(self.temporal_stg_blocks)

    @property
    def uses_cfg(self) -> bool:
        """Whether an unconditional pass contributes: a CFG scale other than 1, of the video (any frame's) or the
        sound."""
        return self.cfg_scale != 1.0 or self.audio_cfg_scale not in (None, 1.0) or \
            self.min_guidance_scale not in (None, 1.0)

    @property
    def uses_modality(self) -> bool:
        """Whether the modality-isolated pass contributes (scale other than 1, of the video or the sound)."""
        return self.modality_scale != 1.0 or self.audio_modality_scale not in (None, 1.0)

    def in_window(self, step: int, steps: int) -> bool:
        start, end = self.window
        return start * steps <= step < end * steps

    def stg_active(self, step: int, steps: int) -> bool:
        """Whether the perturbed pass (a factorized model's spatial one) runs at this step: step/steps inside
        [start, end)."""
        spatial = (self.stg_scale > 0 or bool(self.audio_stg_scale)) and bool(self.stg_blocks)
        return spatial and self.in_window(step, steps)

    def temporal_stg_active(self, step: int, steps: int) -> bool:
        """Whether the temporal pass runs at this step (the same window)."""
        return self.uses_temporal_stg and self.in_window(step, steps)

    def frame_scales(self, frames: int):
        """The CFG scale of each frame, as SVD's pipeline computes it: linspace(min_guidance_scale, w, frames)."""
        import torch

        return torch.linspace(self.min_guidance_scale, self.cfg_scale, frames)

    def check_depth(self, depth: int, field: str = "stg_blocks") -> None:
        bad = [b for b in getattr(self, field) if b >= depth]
        if bad:
            raise ValueError(f"{field} {bad} out of range: this model has {depth} blocks, allowed 0-{depth - 1}")

    def as_dict(self) -> dict:
        data = asdict(self)
        data["stg_blocks"] = list(self.stg_blocks)
        data["temporal_stg_blocks"] = list(self.temporal_stg_blocks)
        data["window"] = list(self.window)
        return data


def extras_from(settings: dict) -> dict:
    """The EXTRAS among a preset's defaults: what the model's recipe turns on in every panel."""
    return {name: settings[name] for name in EXTRAS if name in settings}


_DEFAULTS = {name: Guidance.__dataclass_fields__[name].default for name in EXTRAS}


def guide(eps_c: torch.Tensor, eps_u: torch.Tensor | None, eps_p: torch.Tensor | None, g: Guidance,
          eps_m: torch.Tensor | None = None, eps_t: torch.Tensor | None = None, w=None) -> torch.Tensor:
    """Combine the passes of one panel; a missing pass (None) contributes no term. w: the CFG scale where it is
    not g.cfg_scale alone (a tensor of one scale per frame, shaped to broadcast over eps)."""
    w = g.cfg_scale if w is None else w
    eps = eps_c if eps_u is None else eps_u + w * (eps_c - eps_u)
    if eps_p is not None:
        eps = eps + g.stg_scale * (eps_c - eps_p)
    if eps_t is not None:
        eps = eps + g.temporal_stg_scale * (eps_c - eps_t)
    if eps_m is not None:
        eps = eps + (g.modality_scale - 1) * (eps_c - eps_m)
    if g.rescale > 0:
        dims = list(range(1, eps.ndim))  # per sample: factor = std(eps_c) / std(eps)
        factor = eps_c.std(dim=dims, keepdim=True) / eps.std(dim=dims, keepdim=True)
        eps = eps * (g.rescale * factor + (1 - g.rescale))
    return eps
