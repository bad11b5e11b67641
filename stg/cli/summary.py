"""The summary of a command's runs: every prompt's figures, and for a prompts file their means, each over the prompts
where every panel has that figure (a panel that shows no shape has no edge to measure), with how many those are."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

MEAN, COUNT = "mean", "prompts in the mean"


@dataclass(frozen=True)
class Run:
    """One prompt's run: its folder, and its figures per panel (cfg, stg; a sweep: cfg, block N, ...)."""

    prompt: str
    folder: str
    figures: dict[str, dict]


def rows(runs: list[Run], sweep: bool) -> list[dict]:
    """A compare run: one row, CFG then STG figures. A sweep: one row per video."""
    if sweep:
        return [{"prompt": run.prompt, "folder": run.folder, "panel": name, **values}
                for run in runs for name, values in run.figures.items()]
    return [{"prompt": run.prompt, "folder": run.folder, **{f"{name}_{figure}": value
                                                            for name, values in run.figures.items()
                                                            for figure, value in values.items()}}
            for run in runs]


def with_means(runs: list[Run], sweep: bool) -> list[dict]:
    """The rows, then the mean of every number figure (per panel), each over the same prompts for every panel: those
    where every panel has it; then a row with how many prompts each mean is over."""
    table = rows(runs, sweep)
    names = list(dict.fromkeys(f for run in runs for values in run.figures.values() for f, v in values.items()
                               if isinstance(v, float)))
    panels = list(runs[0].figures)
    complete = {f: [run for run in runs if all(isinstance(values.get(f), float) for values in run.figures.values())]
                for f in names}

    def mean(panel: str, figure: str):
        values = [run.figures[panel][figure] for run in complete[figure]]
        return round(fmean(values), 4) if values else None

    blank = dict.fromkeys(table[0], "")
    counted = {f: len(complete[f]) for f in names}
    if sweep:
        means = [{**blank, "prompt": MEAN, "panel": panel, **{f: mean(panel, f) for f in names}} for panel in panels]
        counts = [{**blank, "prompt": COUNT, **counted}]
    else:
        means = [{**blank, "prompt": MEAN, **{f"{p}_{f}": mean(p, f) for p in panels for f in names}}]
        counts = [{**blank, "prompt": COUNT, **{f"{p}_{f}": counted[f] for p in panels for f in names}}]
    return table + means + counts


def text(table: list[dict], words: tuple[str, ...] = ()) -> str:
    """The rows as aligned text: the figures in numbers (those in words are in the CSV), each prompt whole, last."""
    columns = [key for key in table[0] if key not in ("folder", "prompt") and not key.endswith(words)] + ["prompt"]
    cells = [[f"{row[c]:.3f}" if isinstance(row[c], float) else "" if row[c] is None else str(row[c])
              for c in columns] for row in table]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    numeric = [any(isinstance(row[c], (int, float)) and not isinstance(row[c], bool) for row in table)
               for c in columns]
    lines = [[c.rjust(w) if n else c.ljust(w) for c, w, n in zip(line, widths, numeric)] for line in [columns, *cells]]
    return "\n".join("  ".join(line).rstrip() for line in lines)
