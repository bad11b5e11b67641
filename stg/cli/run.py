"""Running a command: read and check every prompt's request, load the model once, render, write, summarise.

`main(argv)` returns the exit status: 0 done, 1 the run failed, 2 bad input (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import inputs, metrics, presets
from ..inputs import COMMANDS, Model, Task
from ..limits import text_problem
from ..quiet import cannot_load, one_line, quiet_libraries
from . import output, summary
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


def loaded(args, command: inputs.Command, before_load: Callable[[], None] = lambda: None) -> tuple[Backend, dict]:
    """The model, and the command's settings from the flags (defaults filled, text parsed) but for the prompt; the
    settings that need no model are checked before the load, where the model is a preset, then `before_load` runs."""
    values = {s.name: getattr(args, s.name) for s in command.settings if hasattr(args, s.name) and s.name != "prompt"}
    known = presets.find(args.model)
    if known is not None:  # bad settings before a long load
        with _flags():
            values = inputs.read(command, values, Model.before_loading(known))
            inputs.guidances(command, values)
    before_load()
    quiet_libraries()
    backend = _load(args)
    with _flags():
        return backend, inputs.read(command, values, Model.of(backend))


def _tasks(args, prompts: list[tuple[str, str]]) -> tuple[Backend, list[Task]]:
    """Load the model and check every prompt's request before the first one runs."""
    command = COMMANDS[args.command]
    output.check(args.out)
    for where, prompt in prompts:  # bad prompts before a long load
        if prompt is None:  # neither --prompt nor --prompts-file: the model, once known, says whether it needs one
            from ..families import for_pipeline

            known = presets.find(args.model)
            if known is not None and for_pipeline(known.pipeline).takes_prompt:
                raise UsageError("--prompt or --prompts-file is required (only a model that makes video from an "
                                 "image alone, such as SVD, takes neither)")
            continue
        problem = text_problem(prompt, required=True)
        if problem:
            raise UsageError(f"{where}--prompt {problem}")
    folders = [_folder(args, index, prompt) for index, (_, prompt) in enumerate(prompts, 1)]
    backend, values = loaded(args, command, lambda: output.prepare(args.out, folders, args.overwrite))
    tasks = []
    for where, prompt in prompts:
        with _flags(where):
            tasks.append(inputs.task(backend, command, {**values, "prompt": prompt}, getattr(args, "panels_per_run", None)))
    return backend, tasks


def _folder(args, index: int, prompt: str) -> Path:
    """Where one prompt's files go: --out itself, or DIR/NNN-words-of-the-prompt/ for a prompts file."""
    if not args.prompts_file:
        return args.out
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40].rstrip("-")
    return args.out / f"{index:03d}-{words or 'prompt'}"


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
    runs, sweep = [], args.command == "sweep"
    with tqdm(total=sum(t.request.total_steps for t in tasks), desc=f"prompt 1/{len(tasks)}", unit="step",
              file=sys.stderr, dynamic_ncols=True) as bar:
        for index, ((_, prompt), task) in enumerate(zip(prompts, tasks), 1):
            bar.set_description(f"prompt {index}/{len(tasks)}")
            folder = _folder(args, index, prompt)

            def progress(step, _total, _start=bar.n):
                bar.update(_start + step - bar.n)

            composed = results.compose(task, backend.render(task.request, progress))
            results.write(composed, results.in_folder(folder))
            runs.append(summary.Run(prompt, folder.name, composed.figures()))
    table = summary.rows(runs, sweep)
    if args.prompts_file:
        table = summary.with_means(runs, sweep)
        results.write_csv(table, args.out / output.SUMMARY)
    words = tuple(f.name for f in metrics.described(backend.preset.figures) if f.text)  # in the CSV, not the table
    print(summary.text(table, words))
    print(f"stg: files in {args.out}", file=sys.stderr)
    return 0


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
