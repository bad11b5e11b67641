"""The example prompts, cached per model.

Gradio caches examples in a folder named by component ids alone, so a restart with another model (or after a fallback
model stood in) would play the other model's videos. Here the folder is named by what made the videos: the model, its
pipeline and dtype, and the examples' settings. An example sets every control to the settings it was made with, so
the page always shows what made the videos it plays.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager

import gradio as gr

import stg

LABEL = "Example prompts (each sets every setting to the model's recipe; made once, then shown at once)"
LABEL_IMAGE = "Example prompts (add a first frame, then Generate)"


def examples(backend: stg.Backend, inputs: list, fn, outputs: list) -> gr.Examples | None:
    """The preset's examples for these controls (the prompt first, no image), the others at their values, run with fn
    on first use and cached. A model that needs an image gets the prompts only: the first frame is the user's."""
    prompts = backend.preset.examples
    if not prompts:
        return None
    if backend.image_to_video:
        return gr.Examples([[p] for p in prompts], inputs=inputs[:1], label=LABEL_IMAGE)
    rows = [[prompt, *(control.value for control in inputs[1:])] for prompt in prompts]
    with _cache_folder(cache_key(backend, rows)):
        return gr.Examples(rows, inputs=inputs, fn=fn, outputs=outputs, cache_examples=True, cache_mode="lazy",
                           visible_columns=[0], label=LABEL)


def cache_key(backend: stg.Backend, rows: list) -> str:
    """A folder name that changes with anything that changes the videos: 'tiny-3f9a0c12de'."""
    made_by = [backend.model, type(backend.pipe).__name__, str(backend.dtype), rows]
    digest = hashlib.sha256(json.dumps(made_by, default=str).encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9.-]+', '-', backend.model).strip('-')[-40:]}-{digest}"


@contextmanager
def _cache_folder(key: str):
    """Gradio reads its examples folder from GRADIO_EXAMPLES_CACHE when an Examples is made: a subfolder for the
    while (the files stay under the served cache folder)."""
    base = gr.utils.get_cache_folder()
    before = os.environ.get("GRADIO_EXAMPLES_CACHE")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(base / key)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("GRADIO_EXAMPLES_CACHE")
        else:
            os.environ["GRADIO_EXAMPLES_CACHE"] = before
