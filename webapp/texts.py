"""What the page says besides its controls: the header, the banner, help, the figures under each video, the style,
and the API's descriptions of its endpoints."""

from __future__ import annotations

import stg
from stg import metrics, scales
from stg.inputs import Command, Setting
from stg.values import IMAGE_RULE, Picture
from stg.presets import SIZES

PAPER = "https://arxiv.org/abs/2411.18664"
SAME_MOTION = 5  # percent: closer motion figures than this count as the same under the videos

CSS = """
.banner {background: #fff4d6; border: 1px solid #e8b93a; border-radius: 8px; padding: 6px 14px;}
.banner p {color: #5c4300 !important; margin: 0;}
.panel-title h3 {margin: 0;}
#header h1 {margin-bottom: 0.2em;}
.note p {color: #8a5a00 !important; font-size: 0.9em; margin: 0;}
#both-video .icon-button-wrapper.top-panel, #grid-video .icon-button-wrapper.top-panel {position: static;
    justify-content: flex-end; width: fit-content; margin-left: auto;}
"""

EXPLORER_HELP = (
    "Which block to perturb depends on the model. Here the CFG video and one CFG + STG video per candidate block "
    "are made from the same prompt and seed, at a reduced size, and shown in one labelled grid with their figures. "
    "Click a row of the table to use its block on the Compare tab. The negative prompt, the guidance scales w, "
    "the CFG rescale, the STG window and the frames per second are the Compare tab's."
)

SCALES_HELP = (
    "The same prompt, seed and sizes at several guidance scales, batched: CFG alone at w "
    f"{', '.join(f'{w:g}' for w in scales.APP_CFG_SCALES)} (the CFG panel's settings), STG alone (w 1) at s "
    f"{', '.join(f'{s:g}' for s in scales.APP_STG_SCALES)} (the CFG + STG panel's mode and blocks), and the CFG + STG "
    "panel as set above. Each plot is one figure of the videos against the scale: see what guidance fixes, and what "
    "it costs."
)

API_HINT = ("Use it from Python: `gradio_client.Client(url).predict(prompt=..., api_name=\"/compare\")`, "
            "or `api_name=\"/sweep\"` for the block explorer; the API page below lists every parameter.")


# What to look for where a model's preset does not say: what the paper reports on the models it was made for (project
# page, CFG then CFG + STG: Mochi's VBench imaging quality .524 -> .628, aesthetic quality .507 -> .554).
PAPER_LOOK_FOR = ("what the paper reports on models like this one: sharper detail and more coherent structure with "
                  "STG (on Mochi, VBench imaging quality 0.524 with CFG, 0.628 with CFG + STG), with about as much "
                  "motion. Whether it shows depends on the prompt, the seed, the block and the scale: compare the "
                  "panels and the figures under them.")


def header_markdown(backend: stg.Backend) -> str:
    preset = backend.preset
    return (
        "# STG Studio\n"
        "**Spatiotemporal Skip Guidance (STG)** guides video diffusion sampling without any training: at every step "
        "it also runs the model with a few transformer blocks skipped, a weaker copy of itself, and steers the "
        "prediction away from that copy. Here one prompt and one seed are rendered with classifier-free guidance "
        "alone (left) and with CFG + STG (right).\n\n"
        f"**What to look for on this model:** {preset.look_for or PAPER_LOOK_FOR}\n\n"
        "`eps = eps_u + w (eps_c - eps_u) + s (eps_c - eps_p)`: eps_u negative prompt, eps_c prompt, "
        f"eps_p prompt with the chosen blocks perturbed · [paper: arXiv 2411.18664]({PAPER})\n\n"
        f"Model: **{preset.title}** (`{backend.model}`, {backend.depth} blocks) on **{backend.device}**, "
        f"{str(backend.dtype).removeprefix('torch.')}"
    )


def banner_markdown(backend: stg.Backend, reason: str = "") -> str:
    """What to know about the model's videos (its preset's notice), and why it stands in for the default one."""
    why = f" ({reason})" if reason else ""
    return f"**Offline model{why}.** {backend.preset.notice}"


def figures_help(sets) -> str:
    lines = [f"- *{f.name.capitalize()}*: {f.help}." for f in metrics.described(sets)]
    return "\n".join(["**Figures under each video**", *lines,
                      "- The paper's claim: CFG alone loses motion, STG keeps it. Compare the motion figures to see "
                      "whether it holds for this prompt and seed. The settings JSON has them too."])


def figures_markdown(figures: dict, reference: dict | None = None) -> str:
    """'motion **1.20** px · flicker **0.31** · sharpness **812**', with the change against reference if given."""
    def shown(name: str, value: float) -> str:
        figure = metrics.describe(name)
        text = f"{name} **{figure.number(value)}**{figure.unit}"
        base = None if reference is None else reference.get(name)
        if figure.relative and isinstance(value, float) and isinstance(base, float) and base:
            text += f" ({round((value / base - 1) * 100):+d}% vs CFG)"
        return text

    return " · ".join(shown(name, value) for name, value in figures.items())


def motion_verdict(cfg: dict, with_stg: dict) -> str:
    """Whether this comparison shows the paper's claim; changes under SAME_MOTION percent count as none."""
    before, after = cfg["motion"], with_stg["motion"]
    change = (after / before - 1) * 100 if before else (100.0 if after else 0.0)
    if change >= SAME_MOTION:
        return "More motion with STG than with CFG alone, as the paper reports."
    if change <= -SAME_MOTION:
        return "Less motion with STG than with CFG alone: the paper's claim does not show on this prompt and seed."
    return f"About as much motion with STG as with CFG alone (within {SAME_MOTION}%)."


def stopped_markdown(stopped) -> str:
    """What the page says after Stop, of the runs it stopped (their controls: step done of total)."""
    if not stopped:
        return "Nothing was running."
    done = [f"after step {c.step} of {c.total}" for c in stopped if c.total]
    return f"**Stopped** {done[0] if done else 'within a step'}: no video was made."


def cut_prompt_markdown(tokens: int, limit: int, ignored: list[str]) -> str:
    """The note under a prompt longer than the text encoder reads."""
    start = " ".join(ignored[:6]) + (" …" if len(ignored) > 6 else "")
    return (f"This prompt is {tokens} tokens long, and the model's text encoder reads the first {limit}: it ignores "
            f"the last {len(ignored)} words, from “{start}”. Shorten the prompt to use all of it.")


RETURNS = {
    "compare": "CFG video, CFG + STG video, side-by-side video with captions, settings JSON file, seed",
    "generate": "video, settings JSON file, seed",
    "sweep": "grid video (CFG, then a labelled cell per block), figures table (block, label, then the figures: the "
             "CFG row first, with no block), the table as CSV, settings JSON file, seed",
}


def api_doc(command: Command) -> str:
    """An endpoint's description for the API page: what it makes, each parameter, what it returns."""
    sweep = command.name == "sweep"
    lines = [f"Make {command.summary}.", "", "Args:"]
    lines += [f"    {s.name}: {s.described}; {rule_on_page(s)}{_none(s, sweep)}" for s in command.settings]
    return "\n".join([*lines, "Returns:", f"    {RETURNS[command.name]}"])


def rule_on_page(setting: Setting, preset=None) -> str:
    """The rule the page and its API hold a setting to: the table's, but for an upload, which is first of all a
    picture."""
    return IMAGE_RULE if isinstance(setting.kind, Picture) else setting.rule(preset)


def _none(setting: Setting, sweep: bool) -> str:
    """What None means for this parameter."""
    if setting.follows:
        return f"; None: {setting.follows}'s value"
    if setting.preset:
        return "; None: the preset's" + (" reduced size" if sweep and setting.name in SIZES else "")
    return f"; None: {setting.kind.none}" if setting.kind.none else ""
