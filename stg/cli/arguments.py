"""The command line's parser, built from the settings table: one flag per setting, with its rule and default."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import judged, metrics, presets
from ..inputs import CFG, COMMANDS, MODEL, OUTPUT, PANELS, REQUEST, SETTINGS, STG, SWEEP, Setting
from ..limits import PANELS_PER_RUN
from ..values import Choice, InputError, shown
from . import texts

PROG = "python -m stg"
# The command line's names: every setting's flag, and the options it has of its own.
FLAGS = {**{s.name: s.flag for s in SETTINGS}, "model": "--model", "panels_per_run": "--panels-per-run"}
GROUP_TITLES = {REQUEST: "video settings (both panels)", OUTPUT: "video settings (both panels)",
                CFG: f"{PANELS[CFG]} (the reference)", STG: PANELS[STG], SWEEP: "block sweep",
                MODEL: "the model's own guidance, in every panel (where the model has it)"}


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser(model: str | None = None) -> argparse.ArgumentParser:
    """The parser; with a preset key as model, the help shows that preset's defaults and limits."""
    parser = Parser(prog=PROG, description=texts.DESCRIPTION, epilog=texts.TOP_EPILOG, allow_abbrev=False,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = texts.COMMON_EPILOG.format(presets=_preset_lines(), figures=_figure_lines())
    for name, (summary, text) in texts.COMMANDS.items():
        command = commands.add_parser(name, help=summary, description=f"{text}\n\n{texts.INTRO}",
                                      epilog=texts.EPILOGS[name].format(common=common), allow_abbrev=False,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
        add_model_options(command)
        _add_prompt_options(command)
        add_settings(command, name, model)
    return parser


def add_model_options(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """The model and where it runs."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=default is None, default=default, metavar="KEY|ID|PATH",
                       help=f"a preset key ({', '.join(presets.all_presets())}), a hub id or a local "
                            "diffusers pipeline folder (one written by a trainer here, "
                            + " or ".join(f"python -m {trainer}" for *_, trainer in judged.WORLDS.values())
                            + ", gets its world's preset and judge); 'shapes' and 'lab' run offline on a CPU (small "
                            "models trained on synthetic clips)"
                            + (f" (default: {default})" if default else ""))
    group.add_argument("--device", type=_device,
                       help="torch device, such as cuda, cuda:1 or cpu (default: cuda when there is one)")
    group.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                       help="weights and compute type (default: bfloat16 on cuda, float32 on cpu)")
    group.add_argument("--offload", action="store_true",
                       help="keep idle model parts in CPU memory (less GPU memory, slower)")
    group.add_argument("--fp8", action="store_true",
                       help="keep the transformer weights in float8 (half the memory of bfloat16; close, not equal)")


def _add_prompt_options(parser: argparse.ArgumentParser) -> None:
    """Where the prompts come from and where the files go."""
    group = parser.add_argument_group("prompts and output")
    which = group.add_mutually_exclusive_group()  # one is required, but for a model conditioned on an image alone
    which.add_argument("--prompt", metavar="TEXT", help="what the video shows (required but for image-only models: SVD)")
    which.add_argument("--prompts-file", metavar="FILE", type=Path, help="one prompt a line, run one after the other")
    group.add_argument("--out", metavar="DIR", type=Path, required=True,
                       help="folder for the files (made if missing); one that holds an earlier run is refused")
    group.add_argument("--overwrite", action="store_true",
                       help="replace the files of an earlier run in --out (other files there are left alone)")


def add_settings(parser: argparse.ArgumentParser, command: str, model: str | None,
                 skip: tuple[str, ...] = ("prompt",)) -> None:
    """A flag per setting of the command (but those skipped), grouped by panel, with its rule and default."""
    preset = presets.get(model) if model else None
    groups = {}
    for setting in COMMANDS[command].settings:
        if setting.name in skip:
            continue
        title = GROUP_TITLES[setting.group]
        if setting.group == STG and command == "sweep":
            title = "CFG + STG panels (one per candidate block)"
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        kwargs = {"choices": list(setting.kind.choices)} if isinstance(setting.kind, Choice) else {
            "type": _parse(setting), "metavar": setting.metavar or setting.kind.metavar}
        group.add_argument(setting.flag, default=setting.default, help=_help(setting, preset, model, command), **kwargs)
    if command == "sweep":
        groups[GROUP_TITLES[SWEEP]].add_argument(
            "--panels-per-run", type=_positive, default=PANELS_PER_RUN, metavar="N",
            help=f"videos denoised together in one batched run; fewer need less memory (default: {PANELS_PER_RUN})")


def _help(setting: Setting, preset, model: str | None, command: str) -> str:
    default = setting.default_text(preset, command, spell=lambda s: s.flag)
    if preset is not None and setting.preset and not setting.follows:
        default += f" for {model}"
    return f"{setting.help}: {setting.rule(preset)} (default: {default})"


def _parse(setting: Setting):
    """The argparse type of a setting: its own parser, with its problem as argparse's message."""
    def parse(text: str):
        try:
            return setting.kind.parse(text, setting)
        except InputError as error:
            raise argparse.ArgumentTypeError(error.problem) from None

    parse.__name__ = setting.name
    return parse


def _preset_lines() -> str:
    head = ("preset", "steps", "frames", "size", "fps", "w", "mode", "s", "block", "rescale")
    rows = [head] + [
        (key, p.defaults["steps"], p.defaults["num_frames"], f"{p.defaults['width']}x{p.defaults['height']}", p.fps,
         p.defaults["cfg_scale"], p.defaults["stg_mode"], p.defaults["stg_scale"],
         ",".join(map(str, p.defaults["stg_blocks"])), p.defaults["rescale"])
        for key, p in presets.all_presets().items()]
    rows = [[shown(v) if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)


def _figure_lines() -> str:
    """The figures every video gets, wrapped beside their names."""
    import textwrap

    figures = metrics.described()
    width = max(len(f.name) for f in figures) + 2
    return "\n".join(textwrap.fill(f.help, 78, initial_indent="  " + f.name.ljust(width),
                                   subsequent_indent=" " * (width + 2)) for f in figures)


def _device(text: str) -> str:
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"must be a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if device.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            raise argparse.ArgumentTypeError(f"{text!r} needs a torch built with CUDA; this torch "
                                             f"({torch.__version__}) is a CPU build: install a CUDA build, or use cpu")
        count = torch.cuda.device_count()
        if count == 0 or (device.index or 0) >= count:
            instead = "cpu" if count == 0 else ("cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}")
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA GPU{'s' * (count != 1)} "
                                             f"that torch can use: use {instead}")
    elif not getattr(getattr(torch, device.type, None), "is_available", lambda: True)():  # xpu, mps, ...
        raise argparse.ArgumentTypeError(f"{text!r}: torch finds no {device.type} device here")
    return text


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def model_in(argv: list[str]) -> str | None:
    """The --model value, if any, so that --help can show that preset's defaults."""
    for index, arg in enumerate(argv):
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
        if arg == "--model" and index + 1 < len(argv):
            return argv[index + 1]
    return None
