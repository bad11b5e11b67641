"""`python -m stg.evaluate --model shapes --prompts 100`: CFG against CFG + STG, judged against ground truth.

Prompts of the shapes grammar and seeds are drawn from `--seed`; each is rendered as a comparison at the preset's
defaults (or the flags given), both panels are judged (`stg.shapes.judge`), and one table shows, per figure, the CFG
panel beside the CFG + STG panel with the spread over prompts and the paired difference.
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
    p = argparse.ArgumentParser(prog="python -m stg.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="shapes", help="a model trained on the shapes grammar (preset key or folder)")
    p.add_argument("--prompts", type=int, default=100, help="how many prompts (each with its own seed)")
    p.add_argument("--seed", type=int, default=0, help="draws the prompts and their seeds")
    p.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    p.add_argument("--stg-scale", type=float, help="STG scale s of the CFG + STG panel (default: the preset's)")
    p.add_argument("--stg-blocks", help="blocks of the CFG + STG panel, such as '3' (default: the preset's)")
    p.add_argument("--stg-mode", choices=("stg-r", "stg-a"), help="default: the preset's")
    p.add_argument("--json", help="also write every prompt's verdicts and the summary to this file")
    return p.parse_args(argv)


def proportion(hits: list[bool]) -> tuple[float, float]:
    """Share and its 95% half-width (normal approximation)."""
    n, share = len(hits), float(np.mean(hits))
    return share, Z95 * math.sqrt(max(share * (1 - share), 1e-12) / n)


def spread(values: list[float]) -> tuple[float, float, float]:
    """Mean, standard deviation and 95% half-width of the mean, ignoring missing values."""
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
    for name, text in judge.QUALITY.items():
        cfg, stg = ([r[panel][name] for r in records] for panel in ("cfg", "stg"))
        paired = [y - x for x, y in zip(cfg, stg) if x is not None and y is not None]
        (a, sa, _), (b, sb, _), diff = spread(cfg), spread(stg), spread(paired)
        rows.append({"figure": f"{text} (lower is better)", "cfg": a, "cfg_pm": sa, "stg": b, "stg_pm": sb,
                     "diff": diff[0], "diff_pm": diff[2]})
    gap = spread([r["difference"] for r in records])
    rows.append({"figure": "CFG vs CFG + STG pixels apart, /255", "cfg": math.nan, "cfg_pm": math.nan,
                 "stg": math.nan, "stg_pm": math.nan, "diff": gap[0], "diff_pm": gap[1]})
    return rows


def print_table(rows: list[dict], count: int) -> None:
    print(f"{'figure':<40} {'CFG':>15} {'CFG + STG':>15} {'STG - CFG':>17}")
    for row in rows:
        cells = [f"{row['cfg']:.2f} ± {row['cfg_pm']:.2f}" if not math.isnan(row["cfg"]) else "",
                 f"{row['stg']:.2f} ± {row['stg_pm']:.2f}" if not math.isnan(row["stg"]) else "",
                 f"{row['diff']:+.2f} ± {row['diff_pm']:.2f}"]
        print(f"{row['figure']:<40} {cells[0]:>15} {cells[1]:>15} {cells[2]:>17}")
    print(f"{count} prompts. Shares: ± 95% interval. Quality: mean ± standard deviation over prompts. "
          "STG - CFG: paired mean ± 95% interval (pixels apart: mean ± standard deviation).")


def main(argv=None) -> int:
    args = parse_args(argv)
    from .backend import Backend
    from .guidance import Guidance

    backend = Backend.load(args.model)
    backend.pipe.set_progress_bar_config(disable=True)
    d = backend.preset.defaults
    left = Guidance(d["cfg_scale"], rescale=d["cfg_rescale"])
    blocks = [int(b) for b in args.stg_blocks.split(",")] if args.stg_blocks else d["stg_blocks"]
    right = Guidance(d["cfg_scale"], stg_scale=d["stg_scale"] if args.stg_scale is None else args.stg_scale,
                     stg_mode=args.stg_mode or d["stg_mode"], stg_blocks=blocks, rescale=d["rescale"],
                     window=tuple(d["window"]))
    rng = np.random.default_rng(args.seed)
    records, started = [], time.perf_counter()
    for index in range(args.prompts):
        prompt = scenes.random_scene(rng).prompt
        seed = int(rng.integers(2**32))
        cfg, stg = backend.compare(prompt, left, right, seed=seed, negative_prompt=d["negative_prompt"],
                                   steps=args.steps)
        records.append({"prompt": prompt, "seed": seed, "cfg": judge.judge(cfg.frames, prompt),
                        "stg": judge.judge(stg.frames, prompt),
                        "difference": float(np.abs(cfg.frames.astype(np.int16) - stg.frames).mean())})
        print(f"\r{index + 1}/{args.prompts} prompts, {time.perf_counter() - started:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    rows = summarise(records)
    print(f"model {args.model}, CFG w {left.cfg_scale:g}; CFG + STG w {right.cfg_scale:g}, s {right.stg_scale:g}, "
          f"{right.stg_mode}, blocks {list(right.stg_blocks)}, rescale {right.rescale:g}; seed {args.seed}")
    print_table(rows, len(records))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": vars(args), "summary": rows, "records": records}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
