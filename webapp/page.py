"""The page: where each control stands, and which events call which handler. Controls come from the settings
table (controls.py); a setting the layout does not place stands in its panel's Advanced section."""

from __future__ import annotations

import gradio as gr

import stg
from stg import metrics
from stg.inputs import BY_NAME, CFG, COMMANDS, MAX_CANDIDATES, MODEL, OUTPUT, REQUEST, STG
from stg.presets import SIZES

from .controls import blocks_text, control
from .files import DELETE_CACHE
from .handlers import Studio
from .texts import API_HINT, CSS, EXPLORER_HELP, banner_markdown, figures_help, header_markdown

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
        _wire_compare(studio, ui, out)
        _wire_explorer(studio, ui, out, {**ui, **x}, x_out, explorer_tab)
    return demo


def _compare_tab(backend: stg.Backend, studio: Studio) -> tuple[Controls, dict]:
    ui, preset = Controls(backend, "compare"), backend.preset
    # With sound, three players starting at once would talk over each other: each plays when asked.
    video = dict(autoplay=not backend.family.makes_sound, loop=True, interactive=False, render=False)
    out = dict(left=gr.Video(label="CFG", elem_id="cfg-video", **video),
               right=gr.Video(label="CFG + STG", elem_id="stg-video", **video),
               both=gr.Video(label="Side by side", show_label=False, elem_id="both-video", **video),
               settings=gr.File(label="Settings (JSON)", interactive=False, render=False),
               seed=gr.Number(label="Seed used", precision=0, interactive=False, render=False))
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            ui.add("prompt", lines=3, placeholder=preset.examples[0] if preset.examples else "")
            ui.add("negative_prompt", lines=1)
            ui.add("image")
            with gr.Row():
                out["run"] = gr.Button("Generate", variant="primary", scale=3)
                out["stop"] = gr.Button("Stop", variant="stop", scale=1)
            if preset.examples:
                gr.Examples([[p] for p in preset.examples], inputs=[ui["prompt"]], fn=studio.example,
                            outputs=_outputs(out), cache_examples=True, cache_mode="lazy", label="Example prompts")
        with gr.Column(scale=2):
            out["recipe"] = gr.Dropdown(list(_recipes(preset)), value="Official recipe", label="Settings preset")
            with gr.Row():
                ui.add("seed", scale=2)
                out["randomize"] = gr.Checkbox(label="Randomize seed", value=True, scale=1)
            _size_controls(ui)
            ui.add("fps")
            ui.rest(REQUEST, OUTPUT)
            _model_controls(ui, backend)
    with gr.Row(equal_height=False):
        _cfg_column(ui, out)
        _stg_column(ui, out, backend)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            gr.Markdown("**Side by side**: one file, so both halves always play in sync")
            out["both"].render()
        with gr.Column(scale=1):
            out["settings"].render()
            out["seed"].render()
            gr.Markdown(figures_help(preset.figures), elem_classes="figures-help")
    return ui, out


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


def _cfg_column(ui: Controls, out: dict) -> None:
    with gr.Column(variant="panel"):
        gr.Markdown("### CFG", elem_classes="panel-title")
        ui.add("cfg_scale")
        with gr.Accordion("Advanced", open=False):
            ui.rest(CFG)
        out["left"].render()
        out["cfg_figures"] = gr.Markdown(elem_id="cfg-figures", elem_classes="figures")


def _stg_column(ui: Controls, out: dict, backend: stg.Backend) -> None:
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
            ui.rest(STG)
        out["right"].render()
        out["stg_figures"] = gr.Markdown(elem_id="stg-figures", elem_classes="figures")


def _explorer_tab(backend: stg.Backend) -> tuple[Controls, dict]:
    """The explorer's own controls (the others are the Compare tab's) and its outputs."""
    x, out = Controls(backend, "sweep"), {}
    gr.Markdown(EXPLORER_HELP)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            x.add("prompt", label="Prompt to explore", lines=2,
                  placeholder="Opening this tab brings the Compare tab's prompt and seed")
            x.add("candidate_blocks", value=blocks_text(backend.candidate_blocks()),
                  label=f"Candidate blocks, one video each ({_depth_text(backend)})",
                  info=f"Comma-separated, at most {MAX_CANDIDATES}; empty: about eight spread over the depth")
            with gr.Row():
                out["explore"] = gr.Button("Explore", variant="primary", scale=3)
                out["stop"] = gr.Button("Stop", variant="stop", scale=1)
            x.add("stg_mode")
            with gr.Row():
                x.add("stg_scale")
                x.add("rescale")
        with gr.Column(scale=2, elem_id="explorer-settings"):
            x.add("seed")
            _size_controls(x)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            out["grid"] = gr.Video(label="CFG, then one CFG + STG video per block", elem_id="grid-video",
                                   autoplay=True, loop=True, interactive=False, height=560)
        with gr.Column(scale=2):
            columns = ["block", "label", *(f.name for f in metrics.described(backend.preset.figures))]
            out["table"] = gr.Dataframe(headers=columns, datatype=["number", "str"] + ["number"] * (len(columns) - 2),
                                        label="Figures per video (click a row to use its block)", interactive=False,
                                        elem_id="sweep-table")
            out["summary"] = gr.Markdown(elem_id="sweep-summary")
            out["note"] = gr.Markdown(elem_id="sweep-note")
            out["csv"] = gr.File(label="Figures (CSV)", interactive=False)
            out["settings"] = gr.File(label="Grid settings (JSON)", interactive=False)
            out["seed"] = gr.Number(label="Seed of this grid", precision=0, interactive=False)
    return x, out


def _wire_compare(studio: Studio, ui: Controls, out: dict) -> None:
    gpu_event = dict(concurrency_limit=1, concurrency_id="gpu")
    private = dict(queue=False, api_visibility="private")
    inputs = [ui[s.name] for s in COMMANDS["compare"].settings]
    compare = out["run"].click(studio.pick_seed, [ui["seed"], out["randomize"]], ui["seed"], **private).then(
        studio.compare, inputs, _outputs(out), api_name="compare", **gpu_event)
    gr.Button(visible=False).click(studio.generate, [ui[s.name] for s in COMMANDS["generate"].settings],
                                   [out["right"], out["settings"], out["seed"]], api_name="generate", **gpu_event)
    out["stop"].click(studio.stop, None, None, cancels=[compare], **private)
    recipes = _recipes(ui.backend.preset)
    out["recipe"].change(lambda key: [recipes[key][size] for size in SIZES], out["recipe"],
                         [ui[size] for size in SIZES], **private)
    out["settings"].change(studio.figures, out["settings"], [out["cfg_figures"], out["stg_figures"]], **private)


def _wire_explorer(studio: Studio, ui: Controls, compare_out: dict, x: dict, out: dict, tab) -> None:
    private = dict(queue=False, api_visibility="private")
    sweep = out["explore"].click(studio.sweep, [x[s.name] for s in COMMANDS["sweep"].settings],
                                 [out["grid"], out["table"], out["csv"], out["settings"], out["seed"]],
                                 api_name="sweep", concurrency_limit=1, concurrency_id="gpu")
    out["stop"].click(studio.stop, None, None, cancels=[sweep], **private)
    out["table"].change(studio.summary, out["table"], out["summary"], **private)
    out["table"].select(studio.use_block, None, [ui["stg_blocks"], out["note"]], api_visibility="private")  # shows gr.Info
    copied = gr.State("")  # the Compare tab's prompt as last brought over
    tab.select(studio.prefill, [ui["prompt"], ui["seed"], compare_out["seed"], copied], [x["prompt"], x["seed"], copied],
               **private)


def _outputs(out: dict) -> list:
    return [out["left"], out["right"], out["both"], out["settings"], out["seed"]]


def _recipes(preset) -> dict[str, dict]:
    return {"Official recipe": {size: preset.defaults[size] for size in SIZES},
            "Quick preview": preset.scaled(steps=0.25, frames=0)}


def _depth_text(backend: stg.Backend) -> str:
    return f"this model has {backend.depth}: 0-{backend.depth - 1}"


def serve(demo: gr.Blocks, *, max_size: int = QUEUE_SIZE, **launch_kwargs):
    """Queue (bounded) and launch; keyword arguments go to `Blocks.launch`."""
    launch_kwargs.setdefault("max_file_size", UPLOAD_LIMIT)
    return demo.queue(max_size=max_size, default_concurrency_limit=1).launch(
        css=CSS, theme=gr.themes.Soft(), **launch_kwargs)
