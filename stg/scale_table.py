"""The scale sweep's figures: over many held-out prompts against ground truth (`python -m stg.evaluate --scales`), and
for one prompt on the page; as rows, a markdown table, a CSV and a Pillow plot.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import intervals, metrics, plots, scales
from .backend import Video


def point_rows(sweep: list[scales.Point]) -> list[dict]:
    return [{"series": p.series, "scale": p.scale} for p in sweep]


def summary(sweep: list[scales.Point], records: list[list[dict]], world) -> tuple[list[dict], list[str]]:
    """One row per point of the sweep: each attribute's share right (%, with its Wilson interval), and each quality
    figure's and motion's mean (with the 95% interval of the mean); and the figures' names in order."""
    shares = [*world.attributes, "all"]
    means = [*world.quality, "motion"]
    rows = []
    for index, row in enumerate(point_rows(sweep)):
        verdicts = [prompt_records[index] for prompt_records in records]
        for name in shares:
            share, low, high = intervals.share([v[f"{name}_ok"] for v in verdicts])
            row.update({f"{name} %": 100 * share, f"{name} %_low": 100 * low, f"{name} %_high": 100 * high})
        for name in means:
            mean, _, half = intervals.mean([v.get(name) for v in verdicts])
            row.update({name: mean, f"{name}_low": mean - half, f"{name}_high": mean + half})
        rows.append(row)
    return rows, [f"{name} %" for name in shares] + means


def markdown(rows: list[dict], figures: list[str]) -> str:
    lines = ["| series | scale | " + " | ".join(figures) + " |", "|---|---|" + "---|" * len(figures)]
    for row in rows:
        cells = [f"{row[f]:.2f} [{row[f + '_low']:.2f}, {row[f + '_high']:.2f}]" if not math.isnan(row[f]) else "–"
                 for f in figures]
        lines.append(f"| {row['series']} | {row['scale']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def evaluate(args, backend, values: dict, world) -> int:
    """`python -m stg.evaluate --scales`: the sweep over `args.prompts` prompts; writes MODEL.md, .csv and .png after
    every prompt (a long run stopped early leaves what it measured, its title saying over how many prompts)."""
    from .inputs import COMMANDS, task

    draw = np.random.default_rng(args.draw)
    records, started = [], time.perf_counter()
    for index in range(args.prompts):
        prompt, seed = world.prompt(draw), int(draw.integers(2**32))
        base = task(backend, COMMANDS["compare"], {**values, "prompt": prompt, "seed": seed}).request
        sweep = scales.points(*base.panels)
        videos = scales.run(backend, base, sweep, args.panels_per_run)
        records.append([{**world.judge(v.frames, prompt), "motion": metrics.motion(v.frames)} for v in videos])
        title, text = _write(args, base, sweep, records, world)
        print(f"\r{index + 1}/{args.prompts} prompts, {time.perf_counter() - started:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    print(title)
    print(text)
    print(f"Written: {Path(args.out) / args.model}.md, .csv, .png ({time.perf_counter() - started:.0f} s)")
    return 0


def _write(args, base, sweep, records, world) -> tuple[str, str]:
    rows, figures = summary(sweep, records, world)
    with_stg = base.panels[1]
    title = (f"{args.model}: {len(records)} prompts (draw {args.draw}), {base.steps} steps, {base.num_frames} frames "
             f"of {base.width}x{base.height}; STG {with_stg.stg_mode}, blocks {list(with_stg.stg_blocks)}; "
             f"CFG + STG w {with_stg.cfg_scale:g}, s {with_stg.stg_scale:g}; 95% intervals")
    text = markdown(rows, figures)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.model}.md").write_text(title + "\n\n" + text + "\n")
    (out / f"{args.model}.csv").write_text(csv_text(rows))
    plots.draw(rows, figures, title).save(out / f"{args.model}.png")
    return title, text


def one_prompt(sweep: list[scales.Point], videos: list[Video], figure_sets) -> tuple[list[dict], list[str]]:
    """The page's sweep for one prompt: each point's numeric figures (the model's figure sets), and their names."""
    names = [f.name for f in metrics.described(figure_sets) if not f.text]
    rows = []
    for row, video in zip(point_rows(sweep), videos):
        measured = metrics.measure(video.frames, video.settings, figure_sets)
        rows.append({**row, **{name: measured.get(name) for name in names}})
    return rows, names


def for_prompt(base, render, figure_sets, cfg_scales=scales.APP_CFG_SCALES, stg_scales=scales.APP_STG_SCALES,
               panels_per_run: int | None = None):
    """The page's sweep of a checked comparison request `base`: `render(request) -> videos` denoises it (on the
    GPU runner); returns the rows (series, scale, each numeric figure) and the plot."""
    sweep = scales.points(*base.panels, cfg_scales, stg_scales)
    rendered = scales.request(base, sweep, panels_per_run)
    rows, names = one_prompt(sweep, scales.videos_of(sweep, rendered, render(rendered)), figure_sets)
    cfg, with_stg = base.panels
    title = (f"seed {base.seed}: CFG alone across w, STG alone (w 1) across s, CFG + STG (w {with_stg.cfg_scale:g}, "
             f"s {with_stg.stg_scale:g})")
    return rows, plots.draw(rows, names, title)
