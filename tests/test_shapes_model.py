"""The shipped shapes model: it loads offline from the repository, follows its grammar, and every surface shows
its ground-truth figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stg
from stg import presets
from stg.inputs import COMMANDS, task
from stg.shapes import judge, scenes

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("prompt_right", "seen", *judge.QUALITY)


@pytest.fixture(scope="module")
def shapes():
    return stg.Backend.load("shapes")


def test_shipped_folder_is_small_and_records_how_it_was_made():
    folder = presets.get("shapes").source
    size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    assert size < 21 * 2**20
    record = json.loads((Path(folder) / "training.json").read_text())
    for key in ("commands", "transformer_steps", "device", "train_seconds", "versions"):
        assert record[key], key


def test_follows_prompts_no_one_chose(shapes):
    """Eight prompts and seeds drawn at random, a comparison at the preset's defaults: both panels get the colours,
    the direction of motion and the shape right, and STG changes the video (the README's evaluation measures the
    same on 100 prompts)."""
    draw = np.random.default_rng(2026)
    right = {panel: dict.fromkeys(judge.ATTRIBUTES, 0) for panel in ("cfg", "stg")}
    apart = []
    for _ in range(8):
        scene, seed = scenes.random_scene(draw), int(draw.integers(2**32))
        videos = shapes.render(task(shapes, COMMANDS["compare"], {"prompt": scene.prompt, "seed": seed}).request)
        for panel, video in zip(right, videos):
            verdict = judge.judge(video.frames, scene)
            for name in judge.ATTRIBUTES:
                right[panel][name] += verdict[f"{name}_ok"]
        apart.append(np.abs(videos[0].frames.astype(np.int16) - videos[1].frames).mean())
    assert min(min(counts.values()) for counts in right.values()) >= 7, right
    assert np.mean(apart) > 1.0, apart


def test_prompt_guide(shapes):
    preset = shapes.preset
    assert "circle" in preset.prompt_hint() and "background" in preset.prompt_hint()
    assert preset.prompt_note("a red circle moving left on a blue background") == ""
    assert "'fox'" in preset.prompt_note("A red fox moving left on a blue background")
    # An unknown word still runs.
    video = shapes.generate("a purple fox", stg.Guidance(3.0), steps=2)
    assert video.frames.shape == (9, 32, 32, 3)


def _stg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_cli_compare_shows_and_records_the_shape_figures(tmp_path):
    done = _stg("stg", "compare", "--model", "shapes", "--prompt", "a green square moving up on a black background",
                "--steps", "6", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    panels = json.loads((tmp_path / "settings.json").read_text())["panels"]
    for panel in panels:
        assert set(FIGURES) <= set(panel["figures"])
        assert 0 <= panel["figures"]["prompt_right"] <= 4
    header = done.stdout.splitlines()[0]
    assert "cfg_prompt_right" in header and "stg_edge_px" in header


def test_evaluate_prints_cfg_beside_stg(tmp_path):
    done = _stg("stg.evaluate", "--prompts", "2", "--steps", "4", "--json", str(tmp_path / "eval.json"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "CFG + STG" in lines[1] and any(line.startswith("all right, %") for line in lines)
    assert all(any(line.startswith(name) for line in lines) for name in judge.QUALITY)
    records = json.loads((tmp_path / "eval.json").read_text())["records"]
    assert len(records) == 2 and {"cfg", "stg", "apart"} <= set(records[0])
    bad = _stg("stg.evaluate", "--prompts", "2", "--stg-scale", "nan")
    assert bad.returncode == 2 and "--stg-scale" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_evaluate_with_a_cache_says_what_it_changed_against_the_uncached_videos(tmp_path):
    done = _stg("stg.evaluate", "--prompts", "3", "--steps", "6", "--cache", "0.3", "--json", str(tmp_path / "e.json"))
    assert done.returncode == 0, done.stderr
    assert "Cached - uncached, paired over prompts" in done.stdout and "forwards reused: uncond" in done.stdout
    result = json.loads((tmp_path / "e.json").read_text())
    effect = {row["figure"]: row for row in result["cache_effect"]}
    records = result["records"]
    for panel in ("cfg", "stg"):
        cached = np.array([r[panel]["colour_err"] for r in records])
        uncached = np.array([r["cache"]["uncached"][panel]["colour_err"] for r in records])
        assert effect["colour_err"][panel] == pytest.approx((cached - uncached).mean())
        right = np.array([r[panel]["all_ok"] for r in records], float)
        right_uncached = np.array([r["cache"]["uncached"][panel]["all_ok"] for r in records], float)
        assert effect["all right, %"][panel] == pytest.approx(100 * (right - right_uncached).mean())
    assert sum(k["reused"] for r in records for f in r["cache"]["forwards"] for k in f.values()) > 0
    assert any(r["cache"]["apart"]["cfg"] > 0 for r in records)


@pytest.mark.parametrize("model", ["shapes", "lab"])
def test_benchmark_prints_its_figures(model):
    done = _stg("stg.shapes.bench", "--repeats", "1", "--model", model)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["height"] == presets.get(model).defaults["height"] and result["repeats"] == 1
    for name in ("load", "compare_render", "compare_total", "app_start"):
        assert 0 < result["seconds"][name] < 300, name
        assert any(line.startswith(name) for line in done.stdout.splitlines()), name
