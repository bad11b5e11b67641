"""The scale sweep: its panels, its intervals, its table, CSV and plot from `python -m stg.evaluate --scales`, and the
page's sweep for one prompt through a served app."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import stg
from stg import intervals, plots, scales

from conftest import launched

PROMPT = "a red circle moving right on a blue background"


def test_wilson_interval_does_not_collapse_at_the_ends():
    share, low, high = intervals.share([True] * 5)
    assert share == 1.0 and low == pytest.approx(0.5655, abs=1e-4) and high == 1.0
    share, low, high = intervals.share([False] * 5)
    assert share == 0.0 and low == 0.0 and high == pytest.approx(0.4345, abs=1e-4)
    share, low, high = intervals.share([True, False] * 50)  # the textbook case: 50 of 100, 40.4% to 59.6%
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_points_cover_both_series_and_render_each_guidance_once():
    cfg, with_stg = stg.Guidance(cfg_scale=4.0), stg.Guidance(cfg_scale=4.0, stg_scale=1.0, stg_blocks=[4])
    sweep = scales.points(cfg, with_stg)
    assert [(p.series, p.scale) for p in sweep] == [("CFG", w) for w in scales.CFG_SCALES] + [
        ("STG", s) for s in scales.STG_SCALES] + [("CFG + STG", 1.0)]
    assert all(p.guidance.cfg_scale == 1.0 and p.guidance.stg_scale == p.scale for p in sweep if p.series == "STG")
    assert sweep[6].guidance == sweep[0].guidance  # STG at s 0 is CFG at w 1: the unguided panel
    assert sweep[-1].guidance == with_stg
    base = stg.backend.Request(PROMPT, "", None, 0, 2, 9, 32, 32, (cfg, with_stg))
    assert len(scales.request(base, sweep, 4).panels) == len(sweep) - 1


def test_plot_draws_a_panel_per_figure_and_each_series():
    rows = [{"series": s, "scale": x, "motion": 1.0 + x / 10, "motion_low": 0.9, "motion_high": 2.0}
            for s, xs in (("CFG", (1, 2, 4)), ("STG", (0, 1, 2))) for x in xs]
    image = np.asarray(plots.draw(rows, ["motion", "edge_px"], "title"))
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert plots.COLOURS["CFG"] in colours and plots.COLOURS["STG"] in colours
    assert plots.COLOURS["CFG + STG"] not in colours  # a series with no points is not drawn
    assert image.shape[1] == 2 * plots.PANEL[0]


def test_evaluate_scales_writes_table_csv_and_plot(tmp_path):
    done = subprocess.run([sys.executable, "-m", "stg.evaluate", "--scales", "--prompts", "2", "--steps", "2",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "shapes.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["series"], float(r["scale"])) for r in rows] == [("CFG", w) for w in scales.CFG_SCALES] + [
        ("STG", s) for s in scales.STG_SCALES] + [("CFG + STG", 1.0)]
    for row in rows:
        low, share, high = (float(row[f"all %{end}"]) for end in ("_low", "", "_high"))
        assert 0 <= low <= share <= high <= 100 and high - low > 10  # 2 prompts: a wide interval, never a point
        assert float(row["motion"]) > 0
    assert "| CFG + STG | 1 |" in (tmp_path / "shapes.md").read_text()
    assert Image.open(tmp_path / "shapes.png").size[0] >= 3 * plots.PANEL[0]
    refused = subprocess.run([sys.executable, "-m", "stg.evaluate", "--scales", "--model", "tiny", "--prompts", "1"],
                             capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert refused.returncode == 2 and "no ground truth" in refused.stderr


def test_evaluate_seeds_sweeps_the_diversity_of_each_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "stg.evaluate", "--model", "lab", "--seeds", "3", "--prompts", "1",
                           "--steps", "4", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "lab-diversity.csv") as handle:
        rows = {(r["series"], float(r["scale"])): r for r in csv.DictReader(handle)}
    assert list(rows) == [("CFG", w) for w in scales.CFG_SCALES] + [("STG", s) for s in scales.STG_SCALES] + [
        ("CFG + STG", 1.0)]
    for row in rows.values():
        assert float(row["start_spread"]) >= 0 and float(row["size_spread"]) >= 0
    for name in ("start_spread", "size_spread"):  # the unguided panel, reached from either series, is one video
        assert rows[("CFG", 1.0)][name] == rows[("STG", 0.0)][name]
    assert Image.open(tmp_path / "lab-diversity.png").size[0] >= 2 * plots.PANEL[0]
    refused = subprocess.run([sys.executable, "-m", "stg.evaluate", "--model", "shapes", "--seeds", "3"],
                             capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert refused.returncode == 2 and "--seeds must be at least 2" in refused.stderr and "lab" in refused.stderr


@pytest.fixture(scope="module")
def shapes_server(app_module):
    from webapp import build_demo

    with launched(app_module, build_demo(stg.Backend.load("shapes"), "no GPU found")) as url:
        yield url


def test_the_page_sweeps_the_scales_of_its_prompt(shapes_server, tmp_path):
    from gradio_client import Client

    client = Client(shapes_server, verbose=False, download_files=str(tmp_path))
    plot, table = client.predict(prompt=PROMPT, seed=3, steps=4, api_name="/scales")
    series = [(row[0], row[1]) for row in table["data"]]
    assert series == [("CFG", w) for w in scales.APP_CFG_SCALES] + [("STG", s) for s in scales.APP_STG_SCALES] + [
        ("CFG + STG", 1.0)]
    assert {"motion", "prompt_right", "edge_px"} <= set(table["headers"])
    motion = table["headers"].index("motion")
    assert all(row[motion] > 0.5 for row in table["data"])  # the circle moves in every panel
    colours = {tuple(c) for c in np.asarray(Image.open(plot).convert("RGB")).reshape(-1, 3)}
    assert all(plots.COLOURS[name] in colours for name in scales.SERIES)


def test_the_tiny_model_has_no_scale_sweep(app_module):
    from webapp import build_demo

    demo = build_demo(app_module.BACKEND)
    names = {d.api_name for d in demo.fns.values()}
    assert "compare" in names and "scales" not in names


def test_the_plot_appears_on_the_page(shapes_server, page):
    page.goto(shapes_server)
    page.get_by_label("Prompt", exact=False).first.fill(PROMPT)
    page.get_by_text("Scale sweep for this prompt").click()
    page.locator("#sweep-scales").click()
    plot = page.locator("#scales-plot img")
    plot.wait_for(timeout=300_000)
    assert page.evaluate("() => document.querySelector('#scales-plot img').naturalWidth") >= 3 * plots.PANEL[0]
    table = page.locator("#scales-table").inner_text()
    assert "CFG + STG" in table and "STG" in table and "motion" in table
