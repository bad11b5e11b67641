"""`python -m stg`: CFG beside CFG + STG from the command line, for one prompt or a file of prompts.

`main(argv)` returns the exit status: 0 done, 1 the run failed, 2 bad input (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean

from . import presets, results
from .backend import Backend
from .guidance import MODES, Guidance

PROG = "python -m stg"
FPS_RANGE = (1, 60)
FIGURES = ("motion", "flicker", "sharpness")

# The engine's messages name its fields; the command line names flags, one per panel setting.
REQUEST_FLAGS = {"prompt": "--prompt", "negative_prompt": "--negative-prompt", "image": "--image", "seed": "--seed",
                 "steps": "--steps", "num_frames": "--num-frames", "height": "--height", "width": "--width"}
LEFT_FLAGS = {"cfg_scale": "--cfg-scale", "rescale": "--cfg-rescale"}
RIGHT_FLAGS = {"cfg_scale": "--stg-cfg-scale", "stg_scale": "--stg-scale", "stg_mode": "--stg-mode",
               "stg_blocks": "--stg-blocks", "rescale": "--rescale", "window start": "--stg-window-start",
               "window end": "--stg-window-end"}


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


# -- the command line ------------------------------------------------------------------------------
INTRO = """\
STG (Spatiotemporal Skip Guidance, Hyung et al., arXiv 2411.18664) runs the
model once more per step with some transformer blocks skipped (stg-r: a block
returns its input; stg-a: its video self-attention becomes an identity map)
and steers away from that weaker prediction:
    eps = eps_u + w (eps_c - eps_u) + s (eps_c - eps_p)"""

DESCRIPTION = """\
Classifier-free guidance (CFG) beside CFG + Spatiotemporal Skip Guidance (STG)
on one video diffusion model, from the same seed, with figures that tell how
much each video moves, flickers and how sharp it is.

""" + INTRO

TOP_EPILOG = """\
examples:
  python -m stg compare --model tiny --prompt "a red fox in snow" --out out/fox
  python -m stg sweep --model ltx-video --prompt "waves at dusk" --out out/blocks

Run `python -m stg COMMAND --help` for the settings, the files written and the
exit status (0 done, 1 the run failed, 2 bad input, 130 interrupted)."""

COMMANDS = {
    "compare": ("CFG beside CFG + STG, measured", """\
Render one prompt twice from the same seed and the same initial noise: once
with classifier-free guidance (CFG), once with CFG + STG. Write both videos,
the two side by side, and their settings and figures (motion, flicker,
sharpness). The model is loaded once, however many prompts there are."""),
    "sweep": ("one CFG + STG video per candidate block, in one grid", """\
Render the CFG video and one CFG + STG video per candidate block, all from the
same seed and initial noise, as one labelled grid video, with the figures
(motion, flicker, sharpness) of every video in a CSV file: the quick way to
find the block to perturb on a model. The model is loaded once, however many
prompts there are."""),
}

COMMON_EPILOG = """\
defaults:
  Every setting left out takes its value from the model's preset:
{presets}
  `--model KEY --help` shows one preset's values beside each setting.

figures (per video, also in settings.json):
  motion     mean displacement between consecutive frames in pixels (phase
             correlation of tiles; a cheap stand-in for optical flow)
  flicker    mean absolute change of frame brightness, frame to frame (0-255)
  sharpness  mean variance of the Laplacian of each frame: higher is crisper

with --prompts-file FILE:
  One prompt a line; blank lines and lines starting with # are skipped. Each
  prompt gets its own folder DIR/NNN-words-of-the-prompt/; DIR/summary.csv
  gets the figures of every prompt and their means, and the same table is
  printed on stdout. Every prompt is checked before the first one runs.

exit status:
  0    done
  1    the run failed (out of memory, a video could not be written, ...)
  2    bad command line, setting, file or model: one line on stderr,
       "stg: error: ..."
  130  interrupted (Ctrl-C); folders already finished are kept

environment:
  STG_CACHE        where the offline tiny models are built
                   (default ~/.cache/stg-studio)
  HF_HOME          where hub models are cached
  HF_HUB_OFFLINE   1: never ask the hub, use the cache only"""

COMPARE_EPILOG = """\
files written (in --out DIR, or in each prompt's folder):
  cfg.mp4            the CFG video (H.264, yuv420p)
  stg.mp4            the CFG + STG video
  side_by_side.mp4   both, captioned with their settings
  settings.json      everything that reproduces the run, and the figures of
                     both videos

examples:
  python -m stg compare --model tiny --prompt "a red fox in snow" --out out/fox
  python -m stg compare --model ltx-video --prompt "waves at dusk" \\
      --stg-blocks "14, 19" --stg-scale 1.5 --seed 7 --out out/waves
  python -m stg compare --model wan-1.3b --prompts-file prompts.txt \\
      --steps 30 --out out/batch

{common}"""

SWEEP_EPILOG = """\
files written (in --out DIR, or in each prompt's folder):
  grid.mp4        the CFG video first, then one labelled cell per candidate
  figures.csv     one row per video: block (empty for CFG), label, motion,
                  flicker, sharpness
  settings.json   everything that reproduces the run, and the figures of
                  every video

examples:
  python -m stg sweep --model tiny --prompt "a fox in snow" --out out/blocks
  python -m stg sweep --model ltx-video --prompt "waves at dusk" \\
      --candidate-blocks "11, 15, 19, 23" --height 256 --width 384 --out out/b

{common}"""


def _preset_lines() -> str:
    head = ("preset", "steps", "frames", "size", "fps", "w", "mode", "s", "block", "rescale")
    rows = [head] + [
        (key, p.defaults["steps"], p.defaults["num_frames"], f"{p.defaults['width']}x{p.defaults['height']}", p.fps,
         p.defaults["cfg_scale"], p.defaults["stg_mode"], p.defaults["stg_scale"],
         ",".join(map(str, p.defaults["stg_blocks"])), p.defaults["rescale"])
        for key, p in presets.all_presets().items()]
    rows = [[f"{v:g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return '"' + ", ".join(map(str, value)) + '"'
    if isinstance(value, str):
        return repr(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _blocks(text: str) -> list[int]:
    """'14, 19' -> [14, 19]."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts or not all(p.isascii() and p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"must be block numbers separated by commas, such as '19' or '14, 19', got {text!r}")
    return [int(p) for p in parts]


def _fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not FPS_RANGE[0] <= value <= FPS_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must be a number in [{FPS_RANGE[0]}, {FPS_RANGE[1]}], got {text!r}")
    return value


def _device(text: str) -> str:
    import torch

    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"must be a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    return text


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def _add_settings(parser: argparse.ArgumentParser, model: str | None, sweep: bool) -> None:
    preset = presets.get(model) if model else None
    d = dict(preset.defaults, fps=preset.fps, stg_window_start=preset.defaults["window"][0],
             stg_window_end=preset.defaults["window"][1]) if preset else {}

    def add(group, flag, text, **kwargs):
        key = flag[2:].replace("-", "_")
        default = kwargs.pop("default_text", None) or (f"{_shown(d[key])} for {model}" if key in d else "preset")
        group.add_argument(flag, help=f"{text} (default: {default})", **kwargs)

    def allowed(key, form=""):
        """The preset's limits of one setting, e.g. ': of the form 8n+1, 9 to 49', or the general rule."""
        if preset is None:
            return f": {form.format(step='k', multiple='16 or 32')}, by model" if form else ""
        rule = preset.limits[key]
        return ": " + ", ".join(filter(None, [form.format(**rule), f"{rule['min']} to {rule['max']}"]))

    group = parser.add_argument_group("model")
    group.add_argument("--model", required=True, metavar="KEY|ID|PATH",
                       help=f"a preset key ({', '.join(presets.all_presets())}), a hub id or a local "
                            "diffusers pipeline folder; 'tiny' is an offline random-weight model (noise-like videos)")
    group.add_argument("--device", type=_device,
                       help="torch device, such as cuda, cuda:1 or cpu (default: cuda when there is one)")
    group.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                       help="weights and compute type (default: bfloat16 on cuda, float32 on cpu)")
    group.add_argument("--offload", action="store_true",
                       help="keep idle model parts in CPU memory (less GPU memory, slower)")

    group = parser.add_argument_group("prompts and output")
    which = group.add_mutually_exclusive_group(required=True)
    which.add_argument("--prompt", metavar="TEXT", help="what the video shows")
    which.add_argument("--prompts-file", metavar="FILE", type=Path, help="one prompt a line, run one after the other")
    group.add_argument("--out", metavar="DIR", type=Path, required=True, help="folder for the files (made if missing)")

    group = parser.add_argument_group("video settings (both panels)")
    add(group, "--negative-prompt", "what to steer away from", metavar="TEXT")
    add(group, "--image", "first frame for an image-to-video model", metavar="PATH", type=Path, default_text="none")
    add(group, "--seed", "seed of the initial noise, the same for every panel", type=int, default=0, default_text="0")
    add(group, "--steps", f"denoising steps{allowed('steps')}", type=int, metavar="N")
    add(group, "--num-frames", f"frames per video{allowed('num_frames', 'of the form {step}n+1')}", type=int,
        metavar="N")
    add(group, "--height", f"in pixels{allowed('height', 'a multiple of {multiple}')}", type=int, metavar="PX")
    add(group, "--width", f"in pixels{allowed('width', 'a multiple of {multiple}')}", type=int, metavar="PX")
    add(group, "--fps", f"frame rate of the files, {FPS_RANGE[0]}-{FPS_RANGE[1]}", type=_fps)

    group = parser.add_argument_group("CFG panel (the reference)")
    add(group, "--cfg-scale", "CFG scale w", type=float, metavar="W")
    add(group, "--cfg-rescale", "rescale toward std(eps_c), 0 (off) to 1", type=float, metavar="R")

    title = "CFG + STG panels (one per candidate block)" if sweep else "CFG + STG panel"
    group = parser.add_argument_group(title)
    add(group, "--stg-cfg-scale", "CFG scale w of this panel", type=float, metavar="W", default_text="--cfg-scale")
    add(group, "--stg-scale", "STG scale s; 0 turns STG off", type=float, metavar="S")
    add(group, "--stg-mode", "; ".join(f"{k}: {v}" for k, v in MODES.items()), choices=list(MODES))
    if sweep:
        group.add_argument("--candidate-blocks", type=_blocks, metavar='"0, 4, 8"',
                           help="blocks to try, one video each (default: 8 blocks spread over the model's depth)")
        group.add_argument("--panels-per-run", type=_positive, default=4, metavar="N",
                           help="videos denoised together in one batched run; fewer need less memory (default: 4)")
    else:
        add(group, "--stg-blocks", "blocks to perturb, numbered from 0", type=_blocks, metavar='"14, 19"')
    add(group, "--rescale", "rescale toward std(eps_c), 0 (off) to 1; the official code uses 0.7", type=float,
        metavar="R")
    add(group, "--stg-window-start", "fraction of the steps where STG starts", type=float, metavar="F")
    add(group, "--stg-window-end", "fraction of the steps where STG ends", type=float, metavar="F")


def build_parser(model: str | None = None) -> argparse.ArgumentParser:
    """The parser; with a preset key as model, the help shows that preset's defaults."""
    parser = Parser(prog=PROG, description=DESCRIPTION, epilog=TOP_EPILOG, allow_abbrev=False,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = COMMON_EPILOG.format(presets=_preset_lines())
    for name, (summary, text) in COMMANDS.items():
        epilog = (SWEEP_EPILOG if name == "sweep" else COMPARE_EPILOG).format(common=common)
        command = commands.add_parser(name, help=summary, description=f"{text}\n\n{INTRO}", epilog=epilog,
                                      allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_settings(command, model, sweep=name == "sweep")
    return parser


def _model_in(argv: list[str]) -> str | None:
    """The --model value, if any, so that --help can show that preset's defaults."""
    for index, arg in enumerate(argv):
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
        if arg == "--model" and index + 1 < len(argv):
            return argv[index + 1]
    return None


# -- running ---------------------------------------------------------------------------------------
def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:500] or type(error).__name__


def _rename(message: str, flags: dict[str, str]) -> str:
    """Field names become flags: names with '_' or ' ' anywhere, plain words only where the message starts."""
    for field in sorted(flags, key=len, reverse=True):
        pattern = rf"(?<![\w-]){re.escape(field)}(?![\w-])" if re.search(r"[_ ]", field) else rf"^{re.escape(field)}\b"
        message = re.sub(pattern, flags[field], message)
    return message


@contextmanager
def _named(flags: dict[str, str], where: str = ""):
    try:
        yield
    except ValueError as error:
        raise UsageError(where + _rename(_one_line(error), flags)) from None


def _prompts(args) -> list[tuple[str, str]]:
    """(where, prompt) pairs; where prefixes error messages about that prompt."""
    if args.prompts_file is None:
        return [("", args.prompt)]
    try:
        lines = args.prompts_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--prompts-file: cannot read {args.prompts_file}: {_one_line(error)}") from None
    prompts = [(f"{args.prompts_file} line {n}: ", line.strip()) for n, line in enumerate(lines, 1)
               if line.strip() and not line.strip().startswith("#")]
    if not prompts:
        raise UsageError(f"--prompts-file: {args.prompts_file} has no prompts (blank lines and # comments are skipped)")
    return prompts


def _image(path: Path | None):
    if path is None:
        return None
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UsageError(f"--image: cannot read {path}: {_one_line(error)}") from None


def _given(args, name: str, default):
    value = getattr(args, name, None)
    return default if value is None else value


def _guidances(args, d: dict) -> tuple[Guidance, Guidance]:
    """The CFG panel and the CFG + STG panel (for a sweep: its settings; the blocks come per candidate)."""
    cfg_scale = _given(args, "cfg_scale", d["cfg_scale"])
    with _named(LEFT_FLAGS):
        left = Guidance(cfg_scale, rescale=_given(args, "cfg_rescale", d["cfg_rescale"]))
    window = (_given(args, "stg_window_start", d["window"][0]), _given(args, "stg_window_end", d["window"][1]))
    with _named(RIGHT_FLAGS):
        right = Guidance(_given(args, "stg_cfg_scale", cfg_scale), _given(args, "stg_scale", d["stg_scale"]),
                         _given(args, "stg_mode", d["stg_mode"]), _given(args, "stg_blocks", d["stg_blocks"]),
                         _given(args, "rescale", d["rescale"]), window)
    return left, right


def _load(args) -> Backend:
    if args.model.startswith(("/", "./", "../", "~")) and not Path(args.model).expanduser().is_dir():
        raise UsageError(f"--model: no such folder: {args.model}")
    try:
        backend = Backend.load(args.model, args.device, args.dtype, offload=args.offload)
    except ValueError as error:
        raise UsageError(_rename(_one_line(error), {"model": "--model"})) from None
    except Exception as error:  # the hub out of reach, a folder without weights, not enough memory, ...
        raise UsageError(f"--model: cannot load {args.model!r}: {type(error).__name__}: {_one_line(error)}") from None
    backend.pipe.set_progress_bar_config(disable=True)  # one bar of our own instead
    return backend


def _slug(index: int, prompt: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40].rstrip("-")
    return f"{index:03d}-{words or 'prompt'}"


def _quiet_libraries() -> None:
    """Library progress bars and advice would bury the one bar and the table this prints."""
    import diffusers
    import huggingface_hub
    import transformers

    for logging in (diffusers.utils.logging, transformers.utils.logging):
        logging.set_verbosity_error()
        logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)


@dataclass
class Job:
    """The loaded model and the checked settings that every prompt of one command runs with."""

    backend: Backend
    left: Guidance
    right: Guidance
    blocks: list[int] | None  # a sweep's candidate blocks; None for a comparison
    options: dict
    fps: float
    steps: int  # denoising steps of one prompt, over all its runs
    panels_per_run: int = 4

    @property
    def sweep(self) -> bool:
        return self.blocks is not None

    def render(self, prompt: str, folder: Path, callback) -> dict[str, dict]:
        """Write one prompt's files in folder; the figures of each video by name (cfg, stg or block N)."""
        if not self.sweep:
            videos = self.backend.compare(prompt, self.left, self.right, callback=callback, **self.options)
            paths, names = results.write_comparison(*videos, folder, self.fps), ["cfg", "stg"]
        else:
            reference, candidates = self.backend.sweep(prompt, self.left, self.right, self.blocks, callback=callback,
                                                       panels_per_run=self.panels_per_run, **self.options)
            paths = results.write_sweep(reference, candidates, folder, self.fps)
            names = ["cfg"] + [f"block {block}" for block in self.blocks]
        panels = json.loads(paths["settings"].read_text())["panels"]
        return {name: panel["figures"] for name, panel in zip(names, panels)}


def _job(args, prompts: list[tuple[str, str]]) -> Job:
    """Load the model and check the settings with every prompt, before the first one runs."""
    sweep = args.command == "sweep"
    image = _image(args.image)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} is a file, not a folder")
    known = presets.get(args.model)
    guidances = _guidances(args, known.defaults) if known else None  # bad settings before a long load
    _quiet_libraries()
    backend = _load(args)
    d = backend.preset.defaults
    left, right = guidances or _guidances(args, d)
    blocks = (args.candidate_blocks or results.default_candidates(backend.depth)) if sweep else None
    options = dict(negative_prompt=_given(args, "negative_prompt", d["negative_prompt"]), image=image, seed=args.seed,
                   steps=args.steps, num_frames=args.num_frames, height=args.height, width=args.width)
    flags = {**REQUEST_FLAGS, "stg_blocks": "--candidate-blocks" if sweep else "--stg-blocks"}
    for where, prompt in prompts:
        with _named(flags, where):
            request = backend.check(prompt, [left, replace(right, stg_blocks=blocks) if sweep else right], **options)
    runs = math.ceil((1 + len(blocks)) / args.panels_per_run) if sweep else 1
    return Job(backend, left, right, blocks, options, fps=args.fps or backend.preset.fps, steps=runs * request.steps,
               panels_per_run=args.panels_per_run if sweep else 1)


def run(args) -> int:
    from tqdm import tqdm

    prompts = _prompts(args)
    job = _job(args, prompts)
    if job.backend.preset.is_tiny:
        print(f"stg: note: {args.model!r} is a random-weight test model: its videos are noise-like and show "
              "that everything runs, not what STG does", file=sys.stderr)
    rows = []
    with tqdm(total=len(prompts) * job.steps, desc=f"prompt 1/{len(prompts)}", unit="step", file=sys.stderr,
              dynamic_ncols=True) as bar:
        for index, (_, prompt) in enumerate(prompts, 1):
            bar.set_description(f"prompt {index}/{len(prompts)}")
            folder = args.out / _slug(index, prompt) if args.prompts_file else args.out

            def progress(step, _total, _start=bar.n):
                bar.update(_start + step - bar.n)

            rows += _rows(prompt, folder.name, job.render(prompt, folder, progress), job.sweep)
    if args.prompts_file:
        rows = _with_means(rows, ("panel",) if job.sweep else ())
        results.write_csv(rows, args.out / "summary.csv")
    print(_table(rows))
    print(f"stg: files in {args.out}", file=sys.stderr)
    return 0


# -- the summary -----------------------------------------------------------------------------------
def _rows(prompt: str, folder: str, figures: dict[str, dict], sweep: bool) -> list[dict]:
    """A compare run: one row, CFG then STG figures. A sweep: one row per video."""
    if sweep:
        return [{"prompt": prompt, "folder": folder, "panel": name, **values} for name, values in figures.items()]
    return [{"prompt": prompt, "folder": folder,
             **{f"{name}_{figure}": values[figure] for name, values in figures.items() for figure in FIGURES}}]


def _with_means(rows: list[dict], by: tuple[str, ...]) -> list[dict]:
    """The rows, then a 'mean' row per value of the `by` columns, averaging every number column."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in by), []).append(row)
    numbers = [key for key, value in rows[0].items() if isinstance(value, float)]
    means = [{**dict.fromkeys(rows[0], ""), "prompt": "mean", **dict(zip(by, key)),
              **{column: round(fmean(row[column] for row in group), 4) for column in numbers}}
             for key, group in groups.items()]
    return rows + means


def _table(rows: list[dict]) -> str:
    columns = [key for key in rows[0] if key != "folder"]
    cells = [[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c])[:40] for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    numeric = [isinstance(rows[0][c], float) for c in columns]
    lines = [[c.rjust(w) if n else c.ljust(w) for c, w, n in zip(line, widths, numeric)] for line in [columns, *cells]]
    return "\n".join("  ".join(line).rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(_model_in(argv))
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return run(args)
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except (UsageError, ValueError) as error:
        print(f"stg: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstg: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a failed run is one line too
        print(f"stg: error: the run failed: {type(error).__name__}: {_one_line(error)}", file=sys.stderr)
        return 1
