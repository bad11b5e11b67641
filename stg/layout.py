"""What of a loaded pipeline the engine drives, checked at load: the transformers it calls (one per expert), the
guider it guides with; and the per-request copy of the pipeline that keeps every one of its settings."""

from __future__ import annotations

import inspect

import torch
from diffusers import DiffusionPipeline, ModelMixin

from .families import Family


def experts(pipe: DiffusionPipeline, family: Family) -> list[tuple[str, torch.nn.Module]]:
    """The transformers the pipeline calls, in the family's expert order; a layout the family does not know
    (a transformer it would leave unguided, or none where it expects one) is refused."""
    called = {
        name: module for name, module in pipe.components.items()
        if isinstance(module, ModelMixin)
        and (name in family.transformers or name.startswith("transformer") or "Transformer" in type(module).__name__)
    }
    unknown = sorted(set(called) - set(family.transformers))
    if unknown or family.transformers[0] not in called:
        layout = ", ".join(f"{name} ({type(called[name]).__name__})" for name in sorted(called)) or "none"
        raise ValueError(
            f"model: {type(pipe).__name__} with transformers {layout} is not a layout STG Studio can guide: "
            f"it guides {' and '.join(family.transformers)} of the {family.name} family, so "
            f"{', '.join(unknown) or family.transformers[0]} would run wrongly"
        )
    return [(name, called[name]) for name in family.transformers if name in called]


# The guider settings under which the pipeline's CFG is the plain formula the CFG panel computes.
_PLAIN_GUIDER = {"guidance_rescale": 0.0, "use_original_formulation": False, "start": 0.0, "stop": 1.0}


def check_guider(guider) -> None:
    if type(guider).__name__ != "ClassifierFreeGuidance":
        raise ValueError(f"model: the pipeline guides with {type(guider).__name__}; STG Studio supports "
                         "ClassifierFreeGuidance only")
    odd = {k: guider.config[k] for k, plain in _PLAIN_GUIDER.items() if guider.config.get(k, plain) != plain}
    if odd:
        raise ValueError(f"model: the pipeline's guider sets {odd}; STG Studio's CFG is plain CFG "
                         f"({_PLAIN_GUIDER}), so its videos would differ from this pipeline's")


class OneRequestAtATime:
    """A shared autoencoder for one request, whose encode and decode run one request at a time: Wan's keeps its
    causal feature cache on the module while it runs, so two requests decoding at once would mix their frames."""

    def __init__(self, autoencoder, lock):
        self.autoencoder = autoencoder
        self.lock = lock

    def __getattr__(self, name):
        return getattr(self.autoencoder, name)

    def encode(self, *args, **kwargs):
        with self.lock:
            return self.autoencoder.encode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        with self.lock:
            return self.autoencoder.decode(*args, **kwargs)


def rebuild(pipe: DiffusionPipeline, components: dict) -> DiffusionPipeline:
    """A pipeline of pipe's class over these components that keeps every registered setting of pipe (Wan 2.2's
    boundary_ratio, TI2V's expand_timesteps, ...), which `type(pipe)(**components)` would drop."""
    settings = {k: v for k, v in pipe.config.items() if k not in pipe.components}
    accepted = inspect.signature(type(pipe).__init__).parameters
    rebuilt = type(pipe)(**components, **{k: v for k, v in settings.items() if k in accepted})
    rebuilt.register_to_config(**settings)
    rebuilt.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return rebuilt
