"""The output folder of a command, checked before any work: a run that renders for minutes must not find at the end
that it cannot write its files, nor silently replace the files of an earlier run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..quiet import one_line
from .arguments import UsageError

RECORD = "settings.json"  # every run writes one: a folder holding it holds a run
SUMMARY = "summary.csv"  # what a run of a prompts file writes beside its prompts' folders


def check(out: Path) -> None:
    """What can be said without touching the disk: a file where the folder should be."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file, not a folder")


def earlier_runs(out: Path, folders: list[Path]) -> list[Path]:
    """The files of an earlier run that this run would replace: the record of `out` itself or of a prompt's folder,
    and a prompts file's summary."""
    candidates = [out / SUMMARY, *(folder / RECORD for folder in folders)]
    return [path for path in candidates if path.is_file()]


def prepare(out: Path, folders: list[Path], overwrite: bool) -> None:
    """Make the folder and prove it takes a file, before the model loads; refuse to replace an earlier run unless
    told to (`overwrite`). `folders` are where this run writes: `out` itself, or one folder per prompt."""
    check(out)
    found = earlier_runs(out, folders)
    if found and not overwrite:
        shown = ", ".join(str(path.relative_to(out)) for path in found[:3]) + (" ..." if len(found) > 3 else "")
        raise UsageError(f"--out: {out} holds an earlier run ({shown}); choose another folder, or add --overwrite "
                         "to replace its files")
    made = next((folder for folder in (out, *out.parents) if folder.exists()), None)  # the deepest that exists
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise UsageError(f"--out: cannot write in {out}: {error.strerror or one_line(error)}") from None
    finally:  # the folders made for the proof go again: a request refused later leaves nothing behind
        for folder in (out, *out.parents):
            if folder == made:
                break
            if folder.exists():
                folder.rmdir()
