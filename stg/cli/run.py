"""Running a command: read and check every prompt's request, load the model once, render, write, summarise.

`main(argv)` returns the exit status: 0 done, 1 the run failed, 2 bad input (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Callable

from .. import inputs, metrics, presets
from ..inputs import COMMANDS, Model, Task
from ..limits import text_problem
from ..quiet import cannot_load, one_line, quiet_libraries
from .arguments import FLAGS, UsageError, build_parser, model_in

if TYPE_CHECKING:  # torch and diffusers load only for a run: --help and bad input answer at once
    from ..backend import Backend


@contextmanager
def _flags(where: str = ""):
    """Bad input as a UsageError, with settings named as flags and, for a prompt of a file, where it stands."""
    try:
        yield
    except ValueError as error:
        raise UsageError(where + inputs.rename(one_line(error), FLAGS)) from None


def _prompts(args) -> list[tuple[str, str]]:
    """(where, prompt) pairs; where prefixes error messages about that prompt."""
    if args.prompts_file is None:
        return [("", args.prompt)]
    try:
        lines = args.prompts_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--prompts-file: cannot read {args.prompts_file}: {one_line(error)}") from None
    prompts = [(f"{args.prompts_file} line {n}: ", line.strip()) for n, line in enumerate(lines, 1)
               if line.strip() and not line.strip().startswith("#")]
    if not prompts:
        raise UsageError(f"--prompts-file: {args.prompts_file} has no prompts (blank lines and # comments are skipped)")
    return prompts


def _load(args) -> Backend:
    from ..backend import Backend

    if args.model.startswith(("/", "./", "../", "~")) and not Path(args.model).expanduser().is_dir():
        raise UsageError(f"--model: no such folder: {args.model}")
    try:
        backend = Backend.load(args.model, args.device, args.dtype, offload=args.offload, fp8=args.fp8)
    except ValueError as error:
        raise UsageError(inputs.rename(one_line(error), FLAGS)) from None
    except Exception as error:  # the hub out of reach, a folder without weights, not enough memory, ...
        raise UsageError(f"--model: {cannot_load(args.model, error)}") from None
    backend.pipe.set_progress_bar_config(disable=True)  # one bar of our own instead
    return backend


def loaded(args, command: inputs.Command) -> tuple[Backend, dict]:
    """The model, and the command's settings from the flags (defaults filled, text parsed) but for the prompt; the
    settings that need no model are checked before the load, where the model is a preset."""
    values = {s.name: getattr(args, s.name) for s in command.settings if hasattr(args, s.name) and s.name != "prompt"}
    known = presets.get(args.model)
    if known is not None:  # bad settings before a long load
        with _flags():
            values = inputs.read(command, values, Model.before_loading(known))
            inputs.guidances(command, values)
    quiet_libraries()
    backend = _load(args)
    with _flags():
        return backend, inputs.read(command, values, Model.of(backend))


def _tasks(args, prompts: list[tuple[str, str]]) -> tuple[Backend, list[Task]]:
    """Load the model and check every prompt's request before the first one runs."""
    command = COMMANDS[args.command]
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} is a file, not a folder")
    for where, prompt in prompts:  # bad prompts before a long load
        problem = text_problem(prompt, required=True)
        if problem:
            raise UsageError(f"{where}--prompt {problem}")
    backend, values = loaded(args, command)
    tasks = []
    for where, prompt in prompts:
        with _flags(where):
            tasks.append(inputs.task(backend, command, {**values, "prompt": prompt}, getattr(args, "panels_per_run", None)))
    return backend, tasks


def _slug(index: int, prompt: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40].rstrip("-")
    return f"{index:03d}-{words or 'prompt'}"


def run(args) -> int:
    from tqdm import tqdm

    from .. import results

    prompts = _prompts(args)
    backend, tasks = _tasks(args, prompts)
    if backend.preset.notice:
        print(f"stg: note: {args.model!r}: {backend.preset.notice}", file=sys.stderr)
    for _, prompt in prompts:
        if note := backend.preset.prompt_note(prompt):
            print(f"stg: note: {prompt[:60]!r}: {note}", file=sys.stderr)
    rows, sweep = [], args.command == "sweep"
    with tqdm(total=sum(t.request.total_steps for t in tasks), desc=f"prompt 1/{len(tasks)}", unit="step",
              file=sys.stderr, dynamic_ncols=True) as bar:
        for index, ((_, prompt), task) in enumerate(zip(prompts, tasks), 1):
            bar.set_description(f"prompt {index}/{len(tasks)}")
            folder = args.out / _slug(index, prompt) if args.prompts_file else args.out

            def progress(step, _total, _start=bar.n):
                bar.update(_start + step - bar.n)

            composed = results.compose(task, backend.render(task.request, progress))
            results.write(composed, results.in_folder(folder))
            rows += _rows(prompt, folder.name, composed.figures(), sweep)
    if args.prompts_file:
        rows = _with_means(rows, ("panel",) if sweep else ())
        results.write_csv(rows, args.out / "summary.csv")
    words = tuple(f.name for f in metrics.described(backend.preset.figures) if f.text)  # in the CSV, not the table
    print(_table(rows, words))
    print(f"stg: files in {args.out}", file=sys.stderr)
    return 0


# -- the summary -----------------------------------------------------------------------------------
def _rows(prompt: str, folder: str, figures: dict[str, dict], sweep: bool) -> list[dict]:
    """A compare run: one row, CFG then STG figures. A sweep: one row per video."""
    if sweep:
        return [{"prompt": prompt, "folder": folder, "panel": name, **values} for name, values in figures.items()]
    return [{"prompt": prompt, "folder": folder,
             **{f"{name}_{figure}": value for name, values in figures.items() for figure, value in values.items()}}]


def _with_means(rows: list[dict], by: tuple[str, ...]) -> list[dict]:
    """The rows, then a 'mean' row per value of the `by` columns, averaging every number column."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in by), []).append(row)
    numbers = [key for key in rows[0] if any(isinstance(row[key], float) for row in rows)]

    def mean(group: list[dict], column: str):
        values = [row[column] for row in group if isinstance(row[column], float)]  # None: nothing was measured
        return round(fmean(values), 4) if values else None

    means = [{**dict.fromkeys(rows[0], ""), "prompt": "mean", **dict(zip(by, key)),
              **{column: mean(group, column) for column in numbers}}
             for key, group in groups.items()]
    return rows + means


def _table(rows: list[dict], words: tuple[str, ...] = ()) -> str:
    """The rows as aligned text, but the folder and the figures in words."""
    columns = [key for key in rows[0] if key != "folder" and not key.endswith(words)]
    cells = [[f"{row[c]:.3f}" if isinstance(row[c], float) else "" if row[c] is None else str(row[c])[:40]
              for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    numeric = [any(isinstance(row[c], float) for row in rows) for c in columns]
    lines = [[c.rjust(w) if n else c.ljust(w) for c, w, n in zip(line, widths, numeric)] for line in [columns, *cells]]
    return "\n".join("  ".join(line).rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)

    def parse_and_run() -> int:
        parser = build_parser(model_in(argv))
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return run(args)

    return guarded(parse_and_run)


def guarded(work: Callable[[], int]) -> int:
    """The exit status of a command: its own, 2 for bad input (one line on stderr), 130 interrupted, 1 failed."""
    try:
        return work()
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except (UsageError, ValueError) as error:
        print(f"stg: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstg: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a failed run is one line too
        print(f"stg: error: the run failed: {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        return 1
