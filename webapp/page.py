"""The page: where each control stands, and which events call which handler. Controls come from the settings
table (controls.py); a setting the layout does not place stands in its panel's Advanced section."""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

import stg
from stg import judged, metrics
from stg.inputs import BY_NAME, CFG, COMMANDS, MAX_CANDIDATES, MODEL, OUTPUT, REQUEST, STG, Command
from stg.presets import SIZES

from .cancels import OneEventCancels
from .controls import blocks_text, control
from .examples import examples
from .files import DELETE_CACHE
from .handlers import Studio
from .texts import API_HINT, CSS, EXPLORER_HELP, SCALES_HELP, banner_markdown, figures_help, header_markdown
from .validation import KEEP_TYPED, checker, status_of

GPU_EVENT = dict(concurrency_limit=1, concurrency_id="gpu")
PRIVATE = dict(queue=False, api_visibility="private")
OFFICIAL, CUSTOM = "Official recipe", "Custom"
NO_RUN = "no video yet"
STATUS_HEIGHT = 40  # px: room for the progress bar and its "Step i of N, about s left"
QUEUE_SIZE = 16  # requests waiting for the GPU; past it a request is refused at once ("Queue is full")
UPLOAD_LIMIT = "40mb"  # hard stop at the upload route; images are refused above MAX_IMAGE_BYTES with a message


class Controls(dict):
    """One tab's controls by setting name; `add` makes a setting's control where the layout stands."""

    def __init__(self, backend: stg.Backend, command: str):
        super().__init__()
        self.backend, self.command = backend, command

    def add(self, name: str, **options):
        self[name] = control(BY_NAME[name], self.backend, self.command, **options)
        return self[name]

    def rest(self, *groups: str):
        """The settings of these groups the layout has not placed, here."""
        for setting in COMMANDS[self.command].settings:
            if setting.group in groups and setting.name not in self:
                self.add(setting.name)


def build_demo(backend: stg.Backend, reason: str = "", *, delete_cache=DELETE_CACHE, output_dir=None) -> gr.Blocks:
    """The page and its API around one loaded backend. Launch with `serve`."""
    studio = Studio(backend, output_dir)
    with gr.Blocks(title="STG Studio", delete_cache=delete_cache) as demo:
        gr.Markdown(header_markdown(backend), elem_id="header")
        if backend.preset.notice:
            gr.Markdown(banner_markdown(backend, reason), elem_classes="banner")
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                ui, out = _compare_tab(backend, studio)
            with gr.Tab("Block explorer", id="explorer") as explorer_tab:
                x, x_out = _explorer_tab(backend)
        gr.Markdown(API_HINT)
        _api(studio, {"compare": _outputs(out), "generate": [out["right"], out["settings"], out["seed"]],
                      "sweep": _sweep_outputs(x_out)})  # first: the endpoints' names are theirs
        _wire_compare(studio, ui, out)
        _wire_explorer(studio, ui, out, {**ui, **x}, x_out, explorer_tab)
        demo.load(lambda: (None, None), None, [out["seed"], x_out["seed"]], **PRIVATE)  # empty: their placeholder
    return demo


def _api(studio: Studio, outputs: dict[str, list]) -> None:
    """The HTTP API: an endpoint per command, on hidden empty controls of its own (a parameter left out is None,
    the default), returning what the page's outputs show."""
    with gr.Column(visible=False):
        for name, command in COMMANDS.items():
            inputs = [control(s, studio.backend, name, api=True) for s in command.settings]
            gr.Button(visible=False).click(getattr(studio, name), inputs, outputs[name], api_name=name, **GPU_EVENT)


def _compare_tab(backend: stg.Backend, studio: Studio) -> tuple[Controls, dict]:
    ui, preset = Controls(backend, "compare"), backend.preset
    # With sound, three players starting at once would talk over each other: each plays when asked.
    video = dict(autoplay=not backend.family.makes_sound, loop=True, interactive=False, render=False)
    out = dict(left=gr.Video(label="CFG", elem_id="cfg-video", **video),
               right=gr.Video(label="CFG + STG", elem_id="stg-video", **video),
               both=gr.Video(label="Side by side", show_label=False, elem_id="both-video", **video),
               settings=gr.File(label="Settings (JSON)", elem_id="settings-file", interactive=False, render=False),
               seed=gr.Number(label="Seed used", precision=0, interactive=False, placeholder=NO_RUN, render=False))
    with gr.Row(equal_height=False):
        with gr.Column(scale=3) as request_column:
            ui.add("prompt", lines=3, placeholder=preset.examples[0] if preset.examples else "",
                   info=preset.prompt_hint() or None, visible=backend.family.takes_prompt)
            out["prompt_note"] = gr.Markdown(elem_id="prompt-note", elem_classes="note")
            ui.add("negative_prompt", lines=1, visible=backend.family.takes_prompt)
            ui.add("image")
            _run_row(out)
        with gr.Column(scale=2):
            out["recipe"] = gr.Dropdown([*_recipes(preset), CUSTOM], value=OFFICIAL, label="Settings preset")
            ui.add("seed")  # the checkbox under it, not beside: beside it, a phone's width cut its label
            out["randomize"] = gr.Checkbox(label="Randomize seed", value=True, container=False)
            _size_controls(ui)
            ui.add("fps")
            with gr.Accordion("Advanced", open=False):
                ui.add("cache")
            ui.rest(REQUEST, OUTPUT)
            _model_controls(ui, backend)
    with gr.Row(equal_height=False):  # each panel's settings; opening one's Advanced moves both videos alike
        _cfg_settings(ui)
        _stg_settings(ui, backend)
    with gr.Row(equal_height=False):  # the two videos, level
        for side, name in (("left", "cfg"), ("right", "stg")):
            with gr.Column(variant="panel"):
                out[side].render()
                out[f"{name}_figures"] = gr.Markdown(elem_id=f"{name}-figures", elem_classes="figures")
    if judged.has_world(backend.model):  # a model judged against ground truth: its figures across the scales
        _scales_section(out)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            gr.Markdown("**Side by side**: one file, so both halves always play in sync")
            out["both"].render()
        with gr.Column(scale=1):
            out["settings"].render()
            out["seed"].render()
            gr.Markdown(figures_help(preset.figures), elem_classes="figures-help")
    with request_column:  # the examples set every control, which all exist by now
        taken = [ui[s.name] for s in COMMANDS["compare"].settings if s.name not in studio.EXAMPLE_LEAVES_OUT]
        examples(backend, taken, studio.example, _outputs(out))
    return ui, out


def _scales_section(out: dict) -> None:
    with gr.Accordion("Scale sweep for this prompt", open=False):
        gr.Markdown(SCALES_HELP)
        out["sweep_scales"] = gr.Button("Sweep the scales", elem_id="sweep-scales")
        with gr.Row(equal_height=False):
            out["scales_plot"] = gr.Image(label="Figures across the scales", type="filepath", interactive=False,
                                          elem_id="scales-plot", scale=3)
            out["scales_table"] = gr.Dataframe(label="Figures per scale", interactive=False, elem_id="scales-table",
                                               scale=2)


def _run_row(out: dict, run: str = "run", label: str = "Generate") -> None:
    """Run and Stop, and under them the run's progress, or how it ended: where the eyes are after a click."""
    with gr.Row():
        out[run] = gr.Button(label, variant="primary", scale=3)
        out["stop"] = gr.Button("Stop", variant="stop", scale=1)
    out["status"] = gr.Markdown(elem_id=f"{run}-status", elem_classes="status", min_height=STATUS_HEIGHT)


def _model_controls(ui: Controls, backend: stg.Backend) -> None:
    """The model's own guidance in every panel (a second expert's w, modality guidance, the sound's scales), at its
    preset's values; shown only where the model has it, so that elsewhere each is left out (None)."""
    names = [s.name for s in COMMANDS["compare"].settings if s.group == MODEL]
    offered = [name for name in names if name not in backend.missing_extras]
    with gr.Accordion("This model's own guidance (every panel)", open=False, visible=bool(offered)):
        for name in names:
            ui.add(name, visible=name in offered)


def _size_controls(ui: Controls) -> None:
    ui.add("steps")
    ui.add("num_frames")
    with gr.Row():
        ui.add("height")
        ui.add("width")


def _cfg_settings(ui: Controls) -> None:
    with gr.Column(variant="panel"):
        gr.Markdown("### CFG", elem_classes="panel-title")
        ui.add("cfg_scale")
        with gr.Accordion("Advanced", open=False):
            ui.rest(CFG)


def _stg_settings(ui: Controls, backend: stg.Backend) -> None:
    with gr.Column(variant="panel"):
        gr.Markdown("### CFG + STG", elem_classes="panel-title")
        with gr.Row():
            ui.add("stg_cfg_scale")
            ui.add("stg_scale")
        with gr.Accordion("Advanced", open=False):
            ui.add("stg_mode")
            ui.add("stg_blocks", label=f"Blocks ({_depth_text(backend)})",
                   info="Comma-separated, such as 19 or 14, 19; empty: the preset's")
            ui.add("rescale")
            with gr.Row():
                ui.add("stg_window_start")
                ui.add("stg_window_end")
            _temporal_controls(ui, backend)
            ui.rest(STG)


def _temporal_controls(ui: Controls, backend: stg.Backend) -> None:
    """The temporal pass, shown only on a model with factorized attention."""
    if backend.temporal_depth is not None:
        ui.add("temporal_stg_scale")
        ui.add("temporal_stg_blocks", label=f"Temporal layers (0-{backend.temporal_depth - 1})",
               info="Comma-separated; empty: the preset's")
    else:  # hidden and off, with a value all the same: an example sets every control
        ui.add("temporal_stg_scale", visible=False, value=0.0)
        ui.add("temporal_stg_blocks", visible=False, value="")


def _explorer_tab(backend: stg.Backend) -> tuple[Controls, dict]:
    """The explorer's own controls (the others are the Compare tab's) and its outputs."""
    x, out = Controls(backend, "sweep"), {}
    gr.Markdown(EXPLORER_HELP)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            x.add("prompt", label="Prompt to explore", lines=2, visible=backend.family.takes_prompt,
                  placeholder="Opening this tab brings the Compare tab's prompt and seed")
            x.add("sweep_layers", visible=backend.temporal_depth is not None)
            x.add("candidate_blocks", value=blocks_text(backend.candidate_blocks()),
                  label=f"Candidate blocks, one video each ({_depth_text(backend)})",
                  info=f"Comma-separated, at most {MAX_CANDIDATES}; empty: about eight spread over the depth")
            _run_row(out, "explore", "Explore")
            x.add("stg_mode")
            with gr.Row():
                x.add("stg_scale")
                x.add("rescale")
        with gr.Column(scale=2, elem_id="explorer-settings"):
            x.add("seed")
            _size_controls(x)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            gr.Markdown("**CFG, then one CFG + STG video per block**")
            out["grid"] = gr.Video(label="Grid", show_label=False, elem_id="grid-video", autoplay=True, loop=True,
                                   interactive=False, height=560)
        with gr.Column(scale=2):
            figures = metrics.described(backend.preset.figures)
            out["table"] = gr.Dataframe(headers=["block", "label", *(f.name for f in figures)],
                                        datatype=["number", "str", *("str" if f.text else "number" for f in figures)],
                                        label="Figures per video (click a row to use its block)", interactive=False,
                                        elem_id="sweep-table")
            out["summary"] = gr.Markdown(elem_id="sweep-summary")
            out["note"] = gr.Markdown(elem_id="sweep-note")
            out["csv"] = gr.File(label="Figures (CSV)", interactive=False)
            out["settings"] = gr.File(label="Grid settings (JSON)", interactive=False)
            out["seed"] = gr.Number(label="Seed of this grid", precision=0, interactive=False, placeholder=NO_RUN)
    return x, out


def _wire_compare(studio: Studio, ui: Controls, out: dict) -> None:
    compare = _gpu_run(out["run"], out, studio, COMMANDS["compare"], ui, _outputs(out),
                       seed=(ui["seed"], out["randomize"]))
    _stop(studio, out, compare)
    if "sweep_scales" in out:
        out["sweep_scales"].click(studio.scales, [ui[s.name] for s in COMMANDS["compare"].settings],
                                  [out["scales_plot"], out["scales_table"]], api_name="scales",
                                  show_progress_on=[out["scales_plot"]], **GPU_EVENT)
    ui["seed"].input(lambda: False, None, out["randomize"], **PRIVATE)  # a typed seed is the one to use
    ui["cfg_scale"].input(lambda w: w, ui["cfg_scale"], ui["stg_cfg_scale"], **PRIVATE)  # follows, as in the API
    recipes, sizes = _recipes(ui.backend.preset), [ui[size] for size in SIZES]
    out["recipe"].change(lambda key: [recipes[key][size] for size in SIZES] if key in recipes else [gr.skip()] * 4,
                         out["recipe"], sizes, **PRIVATE)
    gr.on([c.change for c in sizes], lambda *values: _recipe_of(recipes, values), sizes, out["recipe"], **PRIVATE)
    out["settings"].change(studio.figures, out["settings"], [out["cfg_figures"], out["stg_figures"]], **PRIVATE)
    ui["prompt"].change(studio.prompt_note, ui["prompt"], out["prompt_note"], show_progress="hidden", **PRIVATE)


def _wire_explorer(studio: Studio, ui: Controls, compare_out: dict, x: dict, out: dict, tab) -> None:
    sweep = _gpu_run(out["explore"], out, studio, COMMANDS["sweep"], x, _sweep_outputs(out),
                     also_cleared=[out["summary"], out["note"]])
    _stop(studio, out, sweep)
    out["table"].change(studio.summary, out["table"], out["summary"], **PRIVATE)
    out["table"].select(studio.use_block, None, [ui["stg_blocks"], out["note"]], api_visibility="private")  # shows gr.Info
    copied = gr.State("")  # the Compare tab's prompt as last brought over
    tab.select(studio.prefill, [ui["prompt"], ui["seed"], compare_out["seed"], copied], [x["prompt"], x["seed"], copied],
               **PRIVATE)


def _gpu_run(button, out: dict, studio: Studio, command: Command, controls: dict, outputs: list, also_cleared=(),
             seed=()):
    """A click that first clears the last results (and picks the seed from `seed`, the seed and randomize boxes,
    where given) and says beside the buttons why the request cannot run, if it cannot; then, if it can (the same
    check, with its message under the field), runs the command on the GPU with its progress beside the buttons, from
    these controls of its settings. Returns the run, for Stop to cancel."""
    inputs = [controls[s.name] for s in command.settings]
    cleared = [*outputs, *also_cleared]
    status = status_of(studio.backend, command, controls)

    def start(*values):
        values = list(values)
        if not seed:
            return (*[None] * len(cleared), status(values))
        picked = Studio.pick_seed(values.pop(0), values.pop(0))
        if isinstance(picked, int):
            values[inputs.index(seed[0])] = picked
        return (picked, *[None] * len(cleared), status(values))

    return button.click(start, [*seed, *inputs], [*seed[:1], *cleared, out["status"]], **PRIVATE).then(
        getattr(studio, command.name), inputs, outputs, api_visibility="private", show_progress_on=[out["status"]],
        validator=checker(studio.backend, command, controls), **GPU_EVENT)


def _stop(studio: Studio, out: dict, run) -> None:
    out["stop"].click(studio.stop, None, out["status"], cancels=[run], **PRIVATE)


def _outputs(out: dict) -> list:
    return [out["left"], out["right"], out["both"], out["settings"], out["seed"]]


def _sweep_outputs(out: dict) -> list:
    return [out["grid"], out["table"], out["csv"], out["settings"], out["seed"]]


def _recipes(preset) -> dict[str, dict]:
    return {OFFICIAL: {size: preset.defaults[size] for size in SIZES},
            "Quick preview": preset.scaled(steps=0.25, frames=0)}


def _recipe_of(recipes: dict[str, dict], values) -> str:
    """The recipe these sizes are, else CUSTOM."""
    now = dict(zip(SIZES, values))
    return next((name for name, sizes in recipes.items() if sizes == now), CUSTOM)


def _depth_text(backend: stg.Backend) -> str:
    return f"this model has {backend.depth}: 0-{backend.depth - 1}"


def serve(demo: gr.Blocks, *, max_size: int = QUEUE_SIZE, **launch_kwargs):
    """Queue (bounded) and launch, a cancel stopping its own event only; keyword arguments go to `Blocks.launch`."""
    launch_kwargs.setdefault("max_file_size", UPLOAD_LIMIT)
    return demo.queue(max_size=max_size, default_concurrency_limit=1).launch(
        css=CSS, theme=gr.themes.Soft(), head=KEEP_TYPED, app_kwargs={"middleware": [Middleware(OneEventCancels)]},
        **launch_kwargs)
