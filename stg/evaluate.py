"""`python -m stg.evaluate --model shapes --prompts 100`: CFG against CFG + STG, judged against ground truth.

Prompts of the model's grammar and their seeds are drawn from `--draw`; each is rendered as a comparison with the
model's defaults or the settings given (every `python -m stg compare` setting is a flag here too), both panels are
judged (the model's world, `stg.judged`), and one table shows, per figure, the CFG panel beside the CFG + STG panel
with the spread over prompts and the paired difference. `--scales` sweeps the guidance scales instead
(`stg.scale_table`): CFG alone across w, STG alone across s, and CFG + STG at the settings given; `--seeds K` sweeps
them at K seeds a prompt and says how varied each point's videos are (the lab world's diversity figure).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from . import intervals, judged


def parse_args(argv=None) -> argparse.Namespace:
    from .cli.arguments import Parser, add_model_options, add_settings

    parser = Parser(prog="python -m stg.evaluate", description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser, default="shapes")
    parser.add_argument("--prompts", type=int, default=100, help="how many prompts, each with its own seed")
    parser.add_argument("--draw", type=int, default=0, help="seed of the draw of prompts and their seeds")
    parser.add_argument("--json", metavar="FILE", help="also write every prompt's verdicts and the summary here")
    parser.add_argument("--scales", action="store_true",
                        help="sweep the scales: CFG alone at w 1-8, STG alone (w 1) at s 0-3, and CFG + STG at the "
                             "settings given, every judged figure with 95%% intervals; a table, a CSV and plots")
    parser.add_argument("--seeds", type=int, default=0, metavar="K",
                        help="sweep the scales at K >= 2 seeds per prompt and measure, per point, how varied the K "
                             "videos are in what the prompt leaves free (start position, size) against rendered clips "
                             "of the prompt; a table, a CSV and plots as MODEL-diversity (worlds with a diversity "
                             "figure: lab)")
    parser.add_argument("--out", metavar="DIR", default="assets/scales",
                        help="with --scales: where MODEL.md, MODEL.csv and MODEL.png go (MODEL: the key, or the "
                             "folder's name; default: assets/scales)")
    parser.add_argument("--panels-per-run", type=int, default=None, metavar="N",
                        help="with --scales: panels denoised together in one batched run (default: all of a prompt's)")
    parser.add_argument("--cache-rows", choices=list(CACHE_ROWS), default="all",
                        help="with --cache: the rows the step cache may reuse (perturbed: STG's rows alone; cfg: the "
                             "uncond and cond rows alone); each prompt is also rendered uncached, to say how far apart")
    add_settings(parser, "compare", None, skip=("prompt", "seed", "image", "fps"))
    return parser.parse_args(argv)


CACHE_ROWS = {"all": None, "perturbed": frozenset({"perturbed"}), "cfg": frozenset({"uncond", "cond"})}


def from_uncached(backend, request, videos, world, prompt: str) -> dict:
    """A cached comparison beside the same one uncached: the uncached one judged, per panel mean |cached - uncached|
    (/255), and the forwards the cached one ran and reused."""
    from dataclasses import replace

    plain = backend.render(replace(request, cache=0.0))
    return {"apart": {panel: float(np.abs(v.frames.astype(np.int16) - p.frames).mean())
                      for panel, v, p in zip(("cfg", "stg"), videos, plain)},
            "uncached": {"cfg": world.judge(plain[0].frames, prompt), "stg": world.judge(plain[1].frames, prompt),
                         "apart": float(np.abs(plain[0].frames.astype(np.int16) - plain[1].frames).mean())},
            "forwards": [v.settings["forwards"] for v in videos]}


def cache_lines(records: list[dict]) -> str:
    """How far the cached videos are from the uncached ones, and the forwards the cache saved, per row kind."""
    lines = []
    for panel in ("cfg", "stg"):
        mean, _, pm = intervals.mean([r["cache"]["apart"][panel] for r in records])
        lines.append(f"{panel} panel from its uncached video: mean |difference| {mean:.2f} ± {pm:.2f} /255")
    totals: dict = {}
    for r in records:
        for forwards in r["cache"]["forwards"]:
            for kind, count in forwards.items():
                total = totals.setdefault(kind, {"ran": 0, "reused": 0})
                total["ran"] += count["ran"]
                total["reused"] += count["reused"]
    lines.append("forwards reused: " + ", ".join(
        f"{kind} {c['reused']}/{c['ran'] + c['reused']}" for kind, c in totals.items()))
    return "\n".join(lines)


def cache_effect(records: list[dict], world: judged.World) -> list[dict]:
    """What the cache changed, per figure and panel: cached - uncached, paired over prompts (a share: in percentage
    points), with its 95% interval."""
    rows = []
    for name, scale in [*((f"{a}_ok", 100) for a in [*world.attributes, "all"]), *((q, 1) for q in world.quality)]:
        row = {"figure": f"{name.removesuffix('_ok')} right, %" if name.endswith("_ok") else name}
        for panel in ("cfg", "stg"):
            pairs = [(r[panel][name], r["cache"]["uncached"][panel][name]) for r in records]
            diff = intervals.mean([scale * (float(a) - float(b)) for a, b in pairs if a is not None and b is not None])
            row[panel], row[f"{panel}_pm"] = diff[0], diff[2]
        rows.append(row)
    return rows


def summarise(records: list[dict], world: judged.World) -> list[dict]:
    """One row per figure: CFG and CFG + STG with their spread (a share: its 95% Wilson interval, in `_low` and
    `_high`), and the paired difference STG - CFG."""
    rows = []
    for name in [*world.attributes, "all"]:
        cfg, stg = ([r[panel][f"{name}_ok"] for r in records] for panel in ("cfg", "stg"))
        (a, a_low, a_high), (b, b_low, b_high) = intervals.share(cfg), intervals.share(stg)
        diff = intervals.mean([float(y) - float(x) for x, y in zip(cfg, stg)])
        rows.append({"figure": f"{name} right, %", "cfg": 100 * a, "cfg_low": 100 * a_low, "cfg_high": 100 * a_high,
                     "stg": 100 * b, "stg_low": 100 * b_low, "stg_high": 100 * b_high, "diff": 100 * diff[0],
                     "diff_pm": 100 * diff[2]})
    for name, figure in world.quality.items():
        cfg, stg = ([r[panel][name] for r in records] for panel in ("cfg", "stg"))
        paired = [y - x for x, y in zip(cfg, stg) if x is not None and y is not None]
        (a, sa, _), (b, sb, _), diff = intervals.mean(cfg), intervals.mean(stg), intervals.mean(paired)
        label = f"{name} ({figure.unit.strip()})" if figure.unit.strip() else name
        rows.append({"figure": label, "cfg": a, "cfg_pm": sa, "stg": b, "stg_pm": sb, "diff": diff[0],
                     "diff_pm": diff[2]})
    apart = intervals.mean([r["apart"] for r in records])
    rows.append({"figure": "panels apart (mean |CFG - STG|, /255)", "cfg": math.nan, "cfg_pm": math.nan,
                 "stg": math.nan, "stg_pm": math.nan, "diff": apart[0], "diff_pm": apart[1]})
    return rows


def better(world: judged.World) -> str:
    """Which way each quality figure is better, in words for the table's key."""
    higher = [name for name, figure in world.quality.items() if figure.higher_is_better]
    return "lower is better" + (f" ({', '.join(higher)}: higher)" if higher else "")


def cell(row: dict, key: str, signed: bool = False) -> str:
    """A value with its spread: `v [low, high]` for a share, `v ± pm` otherwise; empty where there is none."""
    value = row[key]
    if math.isnan(value):
        return ""
    if f"{key}_low" in row:
        return f"{value:.2f} [{row[f'{key}_low']:.2f}, {row[f'{key}_high']:.2f}]"
    return f"{value:+.2f} ± {row[f'{key}_pm']:.2f}" if signed else f"{value:.2f} ± {row[f'{key}_pm']:.2f}"


def table(rows: list[dict]) -> str:
    lines = [f"{'figure':<38} {'CFG':>22} {'CFG + STG':>22} {'STG - CFG':>16}"]
    lines += [f"{r['figure']:<38} {cell(r, 'cfg'):>22} {cell(r, 'stg'):>22} "
              f"{cell(r, 'diff', signed=not r['figure'].startswith('panels apart')):>16}" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    from .cli.run import guarded

    return guarded(lambda: evaluate(parse_args(argv)))


def evaluate(args) -> int:
    from .cli.run import loaded
    from .inputs import COMMANDS, task

    world = judged.world(args.model)
    if args.seeds and (args.seeds < 2 or not world.diversity_figures):
        with_one = ", ".join(m for m in judged.WORLDS if judged.world(m).diversity_figures)
        raise ValueError(f"--seeds must be at least 2 and the model's world must have a diversity figure (worlds with "
                         f"one: {with_one}); got {args.seeds} on {args.model}")
    backend, values = loaded(args, COMMANDS["compare"])
    if args.seeds:
        from .scale_table import evaluate_diversity

        return evaluate_diversity(args, backend, values, world)
    if args.scales:
        from .scale_table import evaluate as sweep

        return sweep(args, backend, values, world)

    draw = np.random.default_rng(args.draw)
    records, started = [], time.perf_counter()
    for index in range(args.prompts):
        prompt, seed = world.prompt(draw), int(draw.integers(2**32))
        request = task(backend, COMMANDS["compare"], {**values, "prompt": prompt, "seed": seed}).request
        cfg, stg = backend.render(request, cache_rows=CACHE_ROWS[args.cache_rows])
        records.append({"prompt": prompt, "seed": seed, "cfg": world.judge(cfg.frames, prompt),
                        "stg": world.judge(stg.frames, prompt),
                        "apart": float(np.abs(cfg.frames.astype(np.int16) - stg.frames).mean())})
        if request.cache:
            records[-1]["cache"] = from_uncached(backend, request, (cfg, stg), world, prompt)
        print(f"\r{index + 1}/{args.prompts} prompts, {time.perf_counter() - started:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    rows = summarise(records, world)
    left, right = (cfg.settings["guidance"], stg.settings["guidance"])
    print(f"{args.model}: {args.prompts} prompts (draw {args.draw}), {cfg.settings['steps']} steps, "
          f"{cfg.settings['num_frames']} frames of {cfg.settings['width']}x{cfg.settings['height']}; CFG w "
          f"{left['cfg_scale']:g}; CFG + STG w {right['cfg_scale']:g}, s {right['stg_scale']:g}, {right['stg_mode']}, "
          f"blocks {right['stg_blocks']}, rescale {right['rescale']:g}; step cache {cfg.settings['cache']:g}"
          + (f" ({args.cache_rows} rows)" if cfg.settings["cache"] else ""))
    print(table(rows))
    if cfg.settings["cache"]:
        print(cache_lines(records))
        print("The same prompts and seeds uncached:")
        print(table(summarise([r["cache"]["uncached"] for r in records], world)))
        print("Cached - uncached, paired over prompts (mean ± 95% interval):")
        print(f"{'figure':<38} {'CFG':>16} {'CFG + STG':>16}")
        print("\n".join(f"{r['figure']:<38} {cell(r, 'cfg', signed=True):>16} {cell(r, 'stg', signed=True):>16}"
                        for r in cache_effect(records, world)))
    print(f"Shares: [95% Wilson interval]. Quality figures, {better(world)}: mean ± standard deviation over prompts. "
          "STG - CFG: paired mean ± 95% interval.")
    if args.json:
        with open(args.json, "w") as handle:
            effect = {"cache_effect": cache_effect(records, world)} if cfg.settings["cache"] else {}
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "json"}, "summary": rows, **effect,
                       "records": records}, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
