"""`python -m stg.evaluate --model shapes --prompts 100`: CFG against CFG + STG, judged against ground truth.

Prompts of the shapes grammar and their seeds are drawn from `--draw`; each is rendered as a comparison with the
model's defaults or the settings given (every `python -m stg compare` setting is a flag here too), both panels are
judged (`stg.shapes.judge`), and one table shows, per figure, the CFG panel beside the CFG + STG panel with the
spread over prompts and the paired difference.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from .shapes import judge, scenes

Z95 = 1.96


def parse_args(argv=None) -> argparse.Namespace:
    from .cli.arguments import Parser, add_model_options, add_settings

    parser = Parser(prog="python -m stg.evaluate", description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser, default="shapes")
    parser.add_argument("--prompts", type=int, default=100, help="how many prompts, each with its own seed")
    parser.add_argument("--draw", type=int, default=0, help="seed of the draw of prompts and their seeds")
    parser.add_argument("--json", metavar="FILE", help="also write every prompt's verdicts and the summary here")
    add_settings(parser, "compare", None, skip=("prompt", "seed", "image", "fps"))
    return parser.parse_args(argv)


def proportion(hits: list[bool]) -> tuple[float, float]:
    """Share and its 95% half-width (normal approximation)."""
    share = float(np.mean(hits))
    return share, Z95 * math.sqrt(share * (1 - share) / len(hits))


def spread(values: list) -> tuple[float, float, float]:
    """Mean, standard deviation and 95% half-width of the mean over the measured values (None: not measured)."""
    data = np.array([v for v in values if v is not None], dtype=np.float64)
    if not len(data):
        return math.nan, math.nan, math.nan
    sd = float(data.std(ddof=1)) if len(data) > 1 else 0.0
    return float(data.mean()), sd, Z95 * sd / math.sqrt(len(data))


def summarise(records: list[dict]) -> list[dict]:
    """One row per figure: CFG and CFG + STG with their spread, and the paired difference STG - CFG."""
    rows = []
    for name in [*judge.ATTRIBUTES, "all"]:
        cfg, stg = ([r[panel][f"{name}_ok"] for r in records] for panel in ("cfg", "stg"))
        (a, da), (b, db) = proportion(cfg), proportion(stg)
        diff = spread([float(y) - float(x) for x, y in zip(cfg, stg)])
        rows.append({"figure": f"{name} right, %", "cfg": 100 * a, "cfg_pm": 100 * da, "stg": 100 * b,
                     "stg_pm": 100 * db, "diff": 100 * diff[0], "diff_pm": 100 * diff[2]})
    for name, figure in judge.QUALITY.items():
        cfg, stg = ([r[panel][name] for r in records] for panel in ("cfg", "stg"))
        paired = [y - x for x, y in zip(cfg, stg) if x is not None and y is not None]
        (a, sa, _), (b, sb, _), diff = spread(cfg), spread(stg), spread(paired)
        rows.append({"figure": f"{name} ({figure.unit.strip() or 'RGB'})", "cfg": a, "cfg_pm": sa, "stg": b,
                     "stg_pm": sb, "diff": diff[0], "diff_pm": diff[2]})
    apart = spread([r["apart"] for r in records])
    rows.append({"figure": "panels apart (mean |CFG - STG|, /255)", "cfg": math.nan, "cfg_pm": math.nan,
                 "stg": math.nan, "stg_pm": math.nan, "diff": apart[0], "diff_pm": apart[1]})
    return rows


def table(rows: list[dict]) -> str:
    def cell(value, pm, signed=False):
        return "" if math.isnan(value) else f"{value:+.2f} ± {pm:.2f}" if signed else f"{value:.2f} ± {pm:.2f}"

    lines = [f"{'figure':<38} {'CFG':>15} {'CFG + STG':>15} {'STG - CFG':>16}"]
    lines += [f"{r['figure']:<38} {cell(r['cfg'], r['cfg_pm']):>15} {cell(r['stg'], r['stg_pm']):>15} "
              f"{cell(r['diff'], r['diff_pm'], signed=r['figure'].startswith(tuple(judge.QUALITY)) or 'right' in r['figure']):>16}"
              for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    from .cli.run import guarded

    return guarded(lambda: evaluate(parse_args(argv)))


def evaluate(args) -> int:
    from .cli.run import loaded
    from .inputs import COMMANDS, task

    backend, values = loaded(args, COMMANDS["compare"])

    draw = np.random.default_rng(args.draw)
    records, started = [], time.perf_counter()
    for index in range(args.prompts):
        prompt, seed = scenes.random_scene(draw).prompt, int(draw.integers(2**32))
        cfg, stg = backend.render(task(backend, COMMANDS["compare"], {**values, "prompt": prompt, "seed": seed}).request)
        records.append({"prompt": prompt, "seed": seed, "cfg": judge.judge(cfg.frames, prompt),
                        "stg": judge.judge(stg.frames, prompt),
                        "apart": float(np.abs(cfg.frames.astype(np.int16) - stg.frames).mean())})
        print(f"\r{index + 1}/{args.prompts} prompts, {time.perf_counter() - started:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    rows = summarise(records)
    left, right = (cfg.settings["guidance"], stg.settings["guidance"])
    print(f"{args.model}: {args.prompts} prompts (draw {args.draw}), {cfg.settings['steps']} steps, "
          f"{cfg.settings['num_frames']} frames of {cfg.settings['width']}x{cfg.settings['height']}; CFG w "
          f"{left['cfg_scale']:g}; CFG + STG w {right['cfg_scale']:g}, s {right['stg_scale']:g}, {right['stg_mode']}, "
          f"blocks {right['stg_blocks']}, rescale {right['rescale']:g}")
    print(table(rows))
    print("Shares: ± 95% interval. Quality figures, lower is better: mean ± standard deviation over prompts. "
          "STG - CFG: paired mean ± 95% interval.")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "json"}, "summary": rows,
                       "records": records}, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
