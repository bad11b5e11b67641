"""The request handlers: each endpoint reads its settings with stg.inputs, runs on the GPU, and returns the files
that stg.results composes; the page's smaller events (figures, a table click, Stop) are here too."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from types import MethodType

import gradio as gr

import stg
from stg import inputs, results, scale_table
from stg.inputs import COMMANDS, MODEL, Command
from stg.limits import PANELS_PER_RUN
from stg.values import random_seed

from . import gpu
from .files import ResultFiles
from .texts import api_doc, cut_prompt_markdown, figures_markdown, motion_verdict, stopped_markdown
from .validation import Refused


def endpoint(command: Command, leave_out: tuple[str, ...] = (), prompted: bool = True, run: str = "handle"):
    """A handler whose parameters are the command's settings but `leave_out`, with the API's names, in the table's
    order (prompt required where the model is `prompted`, the others None, meaning the default, except where the
    table gives a value), then Gradio's. It calls the Studio's method `run` (the command's name is the handler's,
    but for another `run`)."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(s.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                     default=inspect.Parameter.empty if s.name == "prompt" and prompted else s.default)
                   for s in command.settings if s.name not in leave_out]
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
        return getattr(studio, run)(command, values, progress, request)

    handler.__signature__ = signature
    handler.__annotations__ = {"request": gr.Request}
    handler.__name__ = handler.__qualname__ = command.name if run == "handle" else run
    handler.__doc__ = api_doc(command)
    return handler


class Studio:
    """Request handlers around one backend; the Gradio functions are its methods."""

    def __init__(self, backend: stg.Backend, output_dir: str | os.PathLike | None = None):
        self.backend = backend
        self.files = ResultFiles(output_dir)
        gpu.register(backend)
        if not gpu.ON_ZERO_GPU:  # the page shows each run's steps; on ZeroGPU the bars are how it learns them
            backend.pipe.set_progress_bar_config(disable=True)
        if not backend.family.takes_prompt:  # a model conditioned on an image alone: the API asks for no prompt
            for name, command in COMMANDS.items():
                setattr(self, name, MethodType(endpoint(command, prompted=False), self))

    compare = endpoint(COMMANDS["compare"])
    generate = endpoint(COMMANDS["generate"])
    sweep = endpoint(COMMANDS["sweep"])
    # The cached examples of a text-only model: no image, and the model's own guidance at its preset's values.
    EXAMPLE_LEAVES_OUT = ("image", *(s.name for s in COMMANDS["compare"].settings if s.group == MODEL))
    example = endpoint(COMMANDS["compare"], leave_out=EXAMPLE_LEAVES_OUT)
    scales = endpoint(COMMANDS["compare"], run="scales_of")

    def scales_of(self, command: Command, values: dict, progress=None, request: gr.Request | None = None) -> tuple:
        """The scale sweep for a comparison's settings (stg.scale_table): the plot's file and the figures' table."""
        refused = next((value for value in values.values() if isinstance(value, Refused)), None)
        if refused is not None:
            raise gr.Error(refused.message, print_exception=False)
        try:
            base = inputs.task(self.backend, command, values).request
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None
        session = getattr(request, "session_hash", None)
        rows, image = scale_table.for_prompt(base, lambda r: gpu.submit(self.backend, r, progress, session),
                                             self.backend.preset.figures, panels_per_run=PANELS_PER_RUN)
        path = self.files.new("scales", ".png")
        image.save(path)
        return str(path), {"headers": list(rows[0]), "data": [list(row.values()) for row in rows]}

    def handle(self, command: Command, values: dict, progress=None, request: gr.Request | None = None) -> tuple:
        """Check, run on the GPU, write the files under unique names; returns them in order, then the seed."""
        refused = next((value for value in values.values() if isinstance(value, Refused)), None)
        if refused is not None:  # the page's check shows it first; a run without that check ends here
            raise gr.Error(refused.message, print_exception=False)
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

    @staticmethod
    def stop(request: gr.Request = None) -> str:
        """Stop this browser session's running request after its current step; what the page says of it."""
        return stopped_markdown(gpu.stop_session(getattr(request, "session_hash", None)))

    @staticmethod
    def pick_seed(seed, randomize):
        """A random seed for the seed box where asked (or where it is empty), else no change: the typed seed is the
        run's, and one that is not a whole number is refused by the run, not rounded."""
        return random_seed() if randomize or seed is None else gr.skip()

    def prompt_note(self, prompt) -> str:
        """What the page says under the prompt: words the model never saw, and where the text encoder stops
        reading it, if it does."""
        return "  \n".join(note for note in (self.backend.preset.prompt_note(prompt or ""), self._cut(prompt)) if note)

    def _cut(self, prompt) -> str:
        tokens, limit = self.backend.prompt_tokens(prompt or "")
        if limit is None or tokens <= limit:
            return ""
        words = prompt.split()
        read, high = 0, len(words)
        while read < high:  # the most words whose tokens all fit, by bisection
            middle = (read + high + 1) // 2
            if self.backend.prompt_tokens(" ".join(words[:middle]))[0] <= limit:
                read = middle
            else:
                high = middle - 1
        return cut_prompt_markdown(tokens, limit, words[read:])

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
