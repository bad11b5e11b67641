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


def summary(sweep: list[scales.Point], records: list[list[dict]], shares: list[str],
            means: list[str]) -> tuple[list[dict], list[str]]:
    """One row per point of the sweep: each of `shares` as the share right (%, with its Wilson interval), and each of
    `means` as the mean (with the 95% interval of the mean); and the figures' names in order."""
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
    records, started, name = [], time.perf_counter(), Path(args.model).name
    for index in range(args.prompts):
        prompt, seed = world.prompt(draw), int(draw.integers(2**32))
        base = task(backend, COMMANDS["compare"], {**values, "prompt": prompt, "seed": seed}).request
        sweep = scales.points(*base.panels)
        videos = scales.run(backend, base, sweep, args.panels_per_run)
        records.append([{**world.judge(v.frames, prompt), "motion": metrics.motion(v.frames)} for v in videos])
        rows = summary(sweep, records, [*world.attributes, "all"], [*world.quality, "motion"])
        title, text = _write(args, base, rows, f"{len(records)} prompts", name)
        print(f"\r{index + 1}/{args.prompts} prompts, {time.perf_counter() - started:.0f} s", end="", file=sys.stderr)
    return _report(args, title, text, name, started)


def evaluate_diversity(args, backend, values: dict, world) -> int:
    """`python -m stg.evaluate --scales --seeds K`: each of `args.prompts` prompts swept at K seeds; per point of the
    sweep, how varied the K videos are in what the prompt leaves free, against rendered clips of the prompt
    (`world.diversity`), averaged over prompts. Written as MODEL-diversity.md, .csv and .png."""
    from .inputs import COMMANDS, task

    draw = np.random.default_rng(args.draw)
    records, started, name = [], time.perf_counter(), f"{args.model}-diversity"
    for index in range(args.prompts):
        prompt = world.prompt(draw)
        per_seed = []
        for seed in draw.integers(2**32, size=args.seeds):
            base = task(backend, COMMANDS["compare"], {**values, "prompt": prompt, "seed": int(seed)}).request
            sweep = scales.points(*base.panels)
            per_seed.append(scales.run(backend, base, sweep, args.panels_per_run))
        records.append([world.diversity([videos[point].frames for videos in per_seed], prompt)
                        for point in range(len(sweep))])
        rows = summary(sweep, records, [], list(world.diversity_figures))
        title, text = _write(args, base, rows, f"{len(records)} prompts x {args.seeds} seeds", name)
        print(f"\r{index + 1}/{args.prompts} prompts, {time.perf_counter() - started:.0f} s", end="", file=sys.stderr)
    return _report(args, title, text, name, started)


def _report(args, title: str, text: str, name: str, started: float) -> int:
    print(file=sys.stderr)
    print(title)
    print(text)
    print(f"Written: {Path(args.out) / name}.md, .csv, .png ({time.perf_counter() - started:.0f} s)")
    return 0


def _write(args, base, summarised: tuple[list[dict], list[str]], counted: str, name: str) -> tuple[str, str]:
    rows, figures = summarised
    with_stg = base.panels[1]
    title = (f"{args.model}: {counted} (draw {args.draw}), {base.steps} steps, {base.num_frames} frames "
             f"of {base.width}x{base.height}; STG {with_stg.stg_mode}, blocks {list(with_stg.stg_blocks)}; "
             f"CFG + STG w {with_stg.cfg_scale:g}, s {with_stg.stg_scale:g}; 95% intervals")
    text = markdown(rows, figures)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(title + "\n\n" + text + "\n")
    (out / f"{name}.csv").write_text(csv_text(rows))
    plots.draw(rows, figures, title).save(out / f"{name}.png")
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
