"""The block explorer (/sweep) and the figures of each video, against the running app (tiny model)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from gradio_client.exceptions import AppError

from conftest import SMALL, SWEEP_PARAMETERS
from stg import video
from webapp import gpu
from webapp.handlers import Studio
from webapp.texts import motion_verdict

FIGURES = ("motion", "flicker", "sharpness")


def test_sweep_endpoint_takes_the_compare_parameters_with_candidate_blocks(client):
    sweep = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/sweep"]
    assert [p["parameter_name"] for p in sweep["parameters"]] == SWEEP_PARAMETERS
    assert [p["parameter_name"] for p in sweep["parameters"] if not p["parameter_has_default"]] == ["prompt"]
    assert [r["component"] for r in sweep["returns"]] == ["Video", "Dataframe", "File", "File", "Number"]


def test_sweep_returns_a_playable_grid_the_table_and_its_csv(client):
    grid, table, csv_path, settings_path, seed = client.predict(
        "a red fox runs through the snow", seed=5, fps=12, candidate_blocks="1, 2", stg_mode="stg-r", **SMALL,
        api_name="/sweep")
    settings = json.loads(Path(settings_path).read_text())
    assert seed == 5 and settings["seed"] == 5 and settings["fps"] == 12
    assert (settings["steps"], settings["num_frames"], settings["height"], settings["width"]) == (2, 9, 32, 64)
    reference, *candidates = settings["panels"]
    assert reference["guidance"]["stg_scale"] == 0 and reference["label"].startswith("CFG")
    assert [p["guidance"]["stg_blocks"] for p in candidates] == [[1], [2]]
    assert {p["guidance"]["stg_mode"] for p in candidates} == {"stg-r"}

    # One grid of 3 cells (CFG, block 1, block 2): 2 columns, 2 rows, each cell a captioned 64 x 32 video.
    info = video.probe(grid)
    assert (info["codec"], info["pix_fmt"], info["frames"], info["fps"]) == ("h264", "yuv420p", 9, 12)
    cells = [np.zeros((9, 32, 64, 3), np.uint8)] * 3
    expected = video.grid(cells, [p["label"] for p in settings["panels"]]).shape
    assert (info["height"], info["width"]) == (expected[1] + expected[1] % 2, expected[2] + expected[2] % 2)
    columns, factor = math.ceil(math.sqrt(3)), video.enlargement(cells)
    assert info["width"] == columns * 64 * factor + (columns - 1) * 4 and info["height"] > 2 * 32 * factor
    frames, _ = video.read_video(grid)
    assert frames.shape == (9, info["height"], info["width"], 3)
    assert frames[:, -32 * factor:, -64 * factor:].max() < 20  # the fourth cell is empty (black)

    # The table: the CFG row, then one row per candidate, with the figures of the settings JSON.
    assert table["headers"] == ["block", "label", *FIGURES]
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert [(r["block"], r["label"]) for r in rows] == [(None, "CFG"), (1, "block 1"), (2, "block 2")]
    for row, panel in zip(rows, settings["panels"]):
        assert {k: row[k] for k in FIGURES} == panel["figures"]
        assert all(isinstance(row[k], float) and row[k] >= 0 for k in FIGURES)
    with open(csv_path, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [list(r) for r in written] == [table["headers"]] * 3
    assert [[r[k] for k in table["headers"]] for r in written] == [
        ["" if v is None else str(v) for v in row] for row in table["data"]]


def test_sweep_defaults_to_a_reduced_size_and_blocks_spread_over_the_depth(client, backend):
    *_, settings_path, _ = client.predict("a cat on the grass", steps=2, api_name="/sweep")
    settings = json.loads(Path(settings_path).read_text())
    reduced = backend.preset.explorer_size
    d = backend.preset.defaults
    assert (settings["num_frames"], settings["height"], settings["width"]) == (
        reduced["num_frames"], reduced["height"], reduced["width"])
    assert reduced["height"] < d["height"] and reduced["width"] < d["width"]
    assert reduced["num_frames"] <= d["num_frames"] and reduced["steps"] < d["steps"]
    blocks = [p["guidance"]["stg_blocks"][0] for p in settings["panels"][1:]]
    assert blocks == backend.candidate_blocks()
    assert {p["guidance"]["stg_mode"] for p in settings["panels"][1:]} == {d["stg_mode"]}


def test_bad_candidate_blocks_are_refused_by_name_and_the_next_sweep_works(client, backend):
    depth = backend.depth
    bad = [
        (str(depth + 2),
         rf"candidate_blocks \[{depth + 2}\] out of range: this model has {depth} blocks, allowed 0-{depth - 1}"),
        ("1, two", rf"candidate_blocks must be block numbers.*this model has {depth} blocks"),
        (", ".join(map(str, range(17))), r"candidate_blocks: at most 16 blocks a sweep, got 17"),
    ]
    for text, message in bad:
        with pytest.raises(AppError, match=message):
            client.predict("a red fox", candidate_blocks=text, **SMALL, api_name="/sweep")
    with pytest.raises(AppError, match=r"stg_scale must be above 0 for a block sweep"):
        client.predict("a red fox", candidate_blocks="1", stg_scale=0, **SMALL, api_name="/sweep")
    with pytest.raises(AppError, match=r"stg_window_start must be less than stg_window_end"):
        client.predict("a red fox", candidate_blocks="1", stg_window_start=0.5, stg_window_end=0.5, **SMALL,
                       api_name="/sweep")
    _, table, *_ = client.predict("a red fox", candidate_blocks="3, 1, 3", **SMALL, api_name="/sweep")
    assert [row[0] for row in table["data"]] == [None, 3, 1]  # each block once, in the order given


def test_compare_settings_have_figures_for_both_panels(client):
    *_, settings_path, _ = client.predict("a red fox", seed=2, **SMALL, api_name="/compare")
    panels = json.loads(Path(settings_path).read_text())["panels"]
    assert len(panels) == 2
    for panel in panels:
        assert set(panel["figures"]) == set(FIGURES) and all(v >= 0 for v in panel["figures"].values())
        assert len(panel["frames_sha256"]) == 64


# -- the handlers, called directly -------------------------------------------------------------------
class Recorder:
    """Stands in for gr.Progress: keeps every description; can call a function at a given one."""

    def __init__(self, at: str | None = None, then=None):
        self.descriptions, self.at, self.then = [], at, then

    def __call__(self, value, desc=None, unit=None):
        self.descriptions.append(desc)
        if desc and self.at and desc.startswith(self.at) and self.then:
            self.then()


def test_progress_counts_the_steps_of_every_run(backend, tmp_path):
    studio = Studio(backend, tmp_path)
    progress = Recorder()
    studio.sweep("a red fox", candidate_blocks="0, 1, 2, 3", progress=progress, **SMALL)
    # 5 panels in runs of 4: two runs of 2 steps.
    steps = [d.split(",")[0] for d in progress.descriptions if d.startswith("Step")]
    assert steps == [f"Step {i} of 4" for i in range(1, 5)]
    assert progress.descriptions[0] == "Waiting for the GPU"


def test_stop_ends_a_sweep_within_a_step(runs, backend, tmp_path):
    studio = Studio(backend, tmp_path)
    request = SimpleNamespace(session_hash="explorer-stop")
    progress = Recorder(at="Step 1 of", then=lambda: studio.stop(request))
    with pytest.raises(gr.Error, match="Stopped"):
        studio.sweep("a red fox", candidate_blocks="0, 1, 2, 3", progress=progress, request=request, **SMALL)
    record = runs[-1]
    assert record.status == "stopped" and record.step == 2 and record.steps == 4, record
    assert not gpu.CONTROLS


def test_a_row_click_gives_its_block(backend, tmp_path):
    studio = Studio(backend, tmp_path)

    def click(row):
        return studio.use_block(gr.SelectData(None, {"index": [0, 1], "value": row[1], "row_value": row}))

    blocks, note = click([2, "block 2", 0.1, 0.2, 300.0])
    assert blocks == "2" and "Block 2" in note
    blocks, note = click([None, "CFG", 0.1, 0.2, 300.0])
    assert blocks == gr.update() and "CFG row has no block" in note


def test_opening_the_explorer_brings_a_new_prompt_and_its_seed():
    prefill = Studio.prefill
    assert prefill("a fox", 1, 42, "") == ("a fox", 42, "a fox")
    assert prefill("a fox", 1, None, "") == ("a fox", 1, "a fox")
    # Once brought over, the explorer's own edits stay until the Compare tab's prompt changes.
    unchanged = (gr.skip(),) * 3
    assert prefill("a fox", 1, 42, "a fox") == unchanged
    assert prefill(" ", 1, 42, "") == unchanged
    assert prefill("a cat", 1, 42, "a fox") == ("a cat", 42, "a cat")


def test_figures_under_each_panel(tmp_path):
    cfg = {"motion": 1.0, "flicker": 0.5, "sharpness": 812.4}  # flicker unchanged: +0%, never -0%
    more = {"motion": 1.5, "flicker": 0.5, "sharpness": 700.0}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"panels": [{"figures": cfg}, {"figures": more}]}))
    left, right = Studio.figures(str(path))
    assert left == "motion **1.00** px · flicker **0.50** · sharpness **812**"
    assert "motion **1.50** px (+50% vs CFG)" in right and "sharpness **700** (-14% vs CFG)" in right
    assert "flicker **0.50** (+0% vs CFG)" in right
    assert "More motion with STG" in right
    path.write_text(json.dumps({"panels": [{"figures": more}, {"figures": cfg}]}))
    assert "Less motion with STG" in Studio.figures(str(path))[1]
    path.write_text(json.dumps({"panels": [{"figures": cfg}, {"figures": {**cfg, "motion": 1.03}}]}))
    assert "About as much motion" in Studio.figures(str(path))[1]
    still = {**cfg, "motion": 0.0}
    assert "About as much motion" in motion_verdict(still, still)
    assert "More motion" in motion_verdict(still, cfg)
    path.write_text(json.dumps({"panels": [{"figures": cfg}]}))  # /generate's: one panel, nothing shown
    assert Studio.figures(str(path)) == ("", "")
    assert Studio.figures(None) == Studio.figures(str(tmp_path / "gone.json")) == ("", "")
