"""Pipeline classes by name: diffusers' own, and this project's for families diffusers lacks (Open-Sora 1.2)."""

from __future__ import annotations

import importlib

# Class name -> the module of this project that defines it.
OWN_PIPELINES = {"OpenSoraPipeline": "stg.opensora"}


def pipeline_class(name: str) -> type:
    """The pipeline class called `name` (``DiffusionPipeline.from_pretrained`` finds only diffusers' own)."""
    module = importlib.import_module(OWN_PIPELINES.get(name, "diffusers"))
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"unknown pipeline class {name!r}") from None
