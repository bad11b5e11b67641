"""The request handlers: each endpoint reads its settings with stg.inputs, runs on the GPU, and returns the files
that stg.results composes; the page's smaller events (figures, a table click, Stop) are here too."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import gradio as gr

import stg
from stg import inputs, results
from stg.inputs import COMMANDS, Command
from stg.values import random_seed

from . import gpu
from .files import ResultFiles
from .texts import api_doc, figures_markdown, motion_verdict


def endpoint(command: Command):
    """A handler whose parameters are the command's settings, with the API's names, in the table's order (prompt
    required, the others None, meaning the default, except where the table gives a value), then Gradio's."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(s.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                     default=inspect.Parameter.empty if s.name == "prompt" else s.default)
                   for s in command.settings]
    parameters += [inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                     default=gr.Progress(track_tqdm=gpu.ON_ZERO_GPU)),
                   inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                     annotation=gr.Request)]
    signature = inspect.Signature(parameters)

    def handler(*args, **kwargs):
        values = signature.bind(*args, **kwargs)
        values.apply_defaults()
        values = dict(values.arguments)
        studio, progress, request = values.pop("self"), values.pop("progress"), values.pop("request")
        return studio.handle(command, values, progress, request)

    handler.__signature__ = signature
    handler.__annotations__ = {"request": gr.Request}
    handler.__name__ = handler.__qualname__ = command.name
    handler.__doc__ = api_doc(command)
    return handler


class Studio:
    """Request handlers around one backend; the Gradio functions are its methods."""

    def __init__(self, backend: stg.Backend, output_dir: str | os.PathLike | None = None):
        self.backend = backend
        self.files = ResultFiles(output_dir)
        gpu.register(backend)

    compare = endpoint(COMMANDS["compare"])
    generate = endpoint(COMMANDS["generate"])
    sweep = endpoint(COMMANDS["sweep"])

    def handle(self, command: Command, values: dict, progress=None, request: gr.Request | None = None) -> tuple:
        """Check, run on the GPU, write the files under unique names; returns them in order, then the seed."""
        try:
            task = inputs.task(self.backend, command, values)
        except ValueError as error:  # refused here, before any GPU time is reserved
            raise gr.Error(str(error), print_exception=False) from None
        videos = gpu.submit(self.backend, task.request, progress, getattr(request, "session_hash", None))
        composed = results.compose(task, videos)
        paths = results.write(composed, self.files.new)
        outputs = []
        for name, part in composed.parts.items():
            if isinstance(part, list):  # a table: shown on the page, and its CSV
                columns = list(part[0])
                outputs.append({"headers": columns, "data": [[row[c] for c in columns] for row in part]})
            outputs.append(str(paths[name]))
        return (*outputs, composed.seed)

    def example(self, prompt):
        """An example prompt with every other setting at the preset's defaults (cached on first use)."""
        return self.compare(prompt)

    @staticmethod
    def stop(request: gr.Request = None):
        """Stop this browser session's running request after its current step."""
        gpu.stop_session(getattr(request, "session_hash", None))

    @staticmethod
    def pick_seed(seed, randomize):
        return random_seed() if randomize or seed is None else int(seed)

    @staticmethod
    def figures(settings_path):
        """The figures under the CFG and CFG + STG videos, read from a comparison's settings JSON."""
        try:
            panels = json.loads(Path(settings_path).read_text())["panels"]
        except (TypeError, OSError, ValueError, KeyError):
            return "", ""
        if len(panels) != 2:  # not a comparison
            return "", ""
        cfg, with_stg = (panel["figures"] for panel in panels)
        return figures_markdown(cfg), figures_markdown(with_stg, cfg) + "  \n" + motion_verdict(cfg, with_stg)

    def use_block(self, evt: gr.SelectData):
        """A click on a row of the explorer's table: its block goes to the Compare tab's blocks."""
        try:
            block = int((evt.row_value or [None])[0])
        except (TypeError, ValueError):  # the CFG row: no block
            block = None
        if block is None or not 0 <= block < self.backend.depth:
            return gr.update(), "The CFG row has no block: click the row of a candidate block."
        gr.Info(f"Block {block} is now in the Compare tab's blocks.")
        return str(block), f"Block {block} is now in the Compare tab's blocks (CFG + STG, Advanced)."

    @staticmethod
    def prefill(prompt, seed, seed_used, copied):
        """On opening the explorer: a prompt new on the Compare tab comes over with its seed (else nothing changes)."""
        if not prompt or not prompt.strip() or prompt == copied:
            return gr.skip(), gr.skip(), gr.skip()
        return prompt, seed_used if seed_used is not None else seed, prompt

    @staticmethod
    def summary(table) -> str:
        """One line under the explorer's table: which block kept the most motion, against the CFG video."""
        data = getattr(table, "values", None)
        rows = [list(row) for row in data] if data is not None else []
        if len(rows) < 2:
            return ""
        motion, label = list(table.columns).index("motion"), list(table.columns).index("label")
        best = max(rows[1:], key=lambda row: row[motion])
        return (f"Most motion: **{best[label]}**, {best[motion]:.2f} px a frame against {rows[0][motion]:.2f} px with "
                "CFG alone. Click a row to use its block on the Compare tab.")
