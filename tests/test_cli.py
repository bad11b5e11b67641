"""`python -m stg`: real runs on the offline tiny model, and the command line's contract (help, errors, exit status)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from stg import cli, video
from stg.backend import Backend

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--model", "tiny", "--steps", "2", "--num-frames", "9", "--height", "32", "--width", "32"]
SETTINGS = ["--negative-prompt", "--image", "--seed", "--steps", "--num-frames", "--height", "--width", "--fps",
            "--cfg-scale", "--cfg-rescale", "--stg-cfg-scale", "--stg-scale", "--stg-mode", "--rescale",
            "--stg-window-start", "--stg-window-end", "--device", "--dtype", "--offload", "--prompt", "--prompts-file",
            "--out", "--model"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One STG_CACHE for the module, here and in the processes it starts: the tiny model is built once."""
    folder = tmp_path_factory.mktemp("stg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STG_CACHE", str(folder))
        yield folder


def stg(*args, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    # Without torchvision, transformers advises installing it when stg is imported; that is not ours to test.
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "stg", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_compare_writes_videos_and_settings_with_figures(cache, tmp_path):
    done = stg("compare", *SMALL, "--prompt", "a red fox in snow", "--stg-blocks", "1, 2", "--cfg-scale", 4,
               "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"cfg.mp4", "stg.mp4", "side_by_side.mp4", "settings.json"}
    panels = {name: video.probe(tmp_path / f"{name}.mp4") for name in ("cfg", "stg", "side_by_side")}
    for info in panels.values():
        assert (info["codec"], info["pix_fmt"], info["frames"]) == ("h264", "yuv420p", 9)
    assert (panels["cfg"]["width"], panels["cfg"]["height"]) == (32, 32)
    assert panels["side_by_side"]["width"] > 2 * panels["cfg"]["width"]

    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["model"] == "tiny" and settings["steps"] == 2 and settings["fps"] == 24
    cfg, stg_panel = settings["panels"]
    assert cfg["guidance"]["stg_scale"] == 0.0 and cfg["guidance"]["stg_blocks"] == []  # no STG in the CFG panel
    assert stg_panel["guidance"]["stg_blocks"] == [1, 2] and stg_panel["guidance"]["stg_mode"] == "stg-a"
    assert cfg["guidance"]["cfg_scale"] == stg_panel["guidance"]["cfg_scale"] == 4.0  # --stg-cfg-scale follows
    for panel in (cfg, stg_panel):
        assert set(panel["figures"]) == {"motion", "flicker", "sharpness"}
    assert "random-weight" in done.stderr  # the tiny model says what its videos are
    assert done.stdout.splitlines()[0].split() == ["cfg_motion", "cfg_flicker", "cfg_sharpness", "stg_motion",
                                                   "stg_flicker", "stg_sharpness", "prompt"]  # the prompt whole, last


def test_sweep_writes_grid_and_one_row_per_candidate(cache, tmp_path):
    done = stg("sweep", *SMALL, "--prompt", "waves at dusk", "--candidate-blocks", "0, 2, 3", "--panels-per-run", 2,
               "--stg-mode", "stg-r", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"grid.mp4", "figures.csv", "settings.json"}
    assert video.probe(tmp_path / "grid.mp4")["codec"] == "h264"
    with open(tmp_path / "figures.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["block"] for row in rows] == ["", "0", "2", "3"]
    assert rows[0]["label"].startswith("CFG")
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert [p["guidance"]["stg_mode"] for p in settings["panels"][1:]] == ["stg-r"] * 3
    assert "block 3" in done.stdout


def test_prompts_file_runs_each_prompt_and_writes_a_summary(cache, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\na red fox in snow\n\n   waves at dusk, slow motion  \n")
    out = tmp_path / "out"
    done = stg("compare", *SMALL, "--prompts-file", prompts, "--out", out)
    assert done.returncode == 0, done.stderr
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["001-a-red-fox-in-snow", "002-waves-at-dusk-slow-motion"]
    for folder in folders:
        assert (out / folder / "side_by_side.mp4").is_file() and (out / folder / "settings.json").is_file()
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["prompt"] for row in rows] == ["a red fox in snow", "waves at dusk, slow motion", "mean",
                                               "prompts in the mean"]
    mean = (float(rows[0]["stg_motion"]) + float(rows[1]["stg_motion"])) / 2
    assert float(rows[2]["stg_motion"]) == pytest.approx(mean, abs=1e-3)
    assert rows[3]["stg_motion"] == rows[3]["cfg_motion"] == "2"
    assert done.stdout.splitlines()[-2].endswith("mean")
    assert done.stdout.splitlines()[-1].endswith("prompts in the mean")
    assert "prompt 2/2" in done.stderr  # the progress bar counts prompts


def test_engine_errors_are_one_line_with_exit_status_2(cache, tmp_path):
    done = stg("compare", *SMALL, "--prompt", "x", "--num-frames", 10, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert error_lines(done.stderr) == ["stg: error: --num-frames must be of the form 8n+1 in [9, 49], got 10"]
    assert not (tmp_path / "out").exists()


# -- in this process: main(argv) ----------------------------------------------------------------------
def test_sweep_of_a_prompts_file_averages_per_block(cache, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\na blue bird\n")
    argv = ["sweep", *SMALL, "--prompts-file", prompts, "--candidate-blocks", "1 3", "--out", tmp_path / "out"]
    assert cli.main(list(map(str, argv))) == 0
    with open(tmp_path / "out" / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["prompt"], row["panel"]) for row in rows[-4:]] == [("mean", "cfg"), ("mean", "block 1"),
                                                                    ("mean", "block 3"), ("prompts in the mean", "")]
    assert len(rows) == 2 * 3 + 3 + 1
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(rows)


@pytest.mark.parametrize("argv, message", [
    (["--stg-blocks", "14,x"], "stg: error: argument --stg-blocks: must be block numbers separated by commas"),
    (["--stg-blocks", "9"], "stg: error: --stg-blocks [9] out of range: this model has 4 blocks, allowed 0-3"),
    (["--stg-cfg-scale", "-1"], "stg: error: --stg-cfg-scale must be a finite number in [1, 20], got -1.0"),
    (["--cfg-scale", "0.5"], "stg: error: --cfg-scale must be a finite number in [1, 20], got 0.5"),
    (["--cfg-scale", "nan"], "stg: error: --cfg-scale must be a finite number in [1, 20], got nan"),
    (["--stg-scale", "15"], "stg: error: --stg-scale must be a finite number in [0, 10], got 15.0"),
    (["--stg-scale", "inf"], "stg: error: --stg-scale must be a finite number in [0, 10], got inf"),
    (["--stg-scale", "\uff11.\uff15"], "stg: error: argument --stg-scale: must be a finite number in [0, 10], got"),
    (["--seed", "\uff11\uff12"], "stg: error: argument --seed: must be an integer written in the digits 0-9"),
    (["--seed", "\u0661"], "stg: error: argument --seed: must be an integer written in the digits 0-9"),
    (["--seed", "2.5"], "stg: error: argument --seed: must be an integer written in the digits 0-9, got '2.5'"),
    (["--seed", "1" * 5000], "stg: error: argument --seed: is out of range: a number of 5000 digits"),
    (["--steps", "1_0"], "stg: error: argument --steps: must be an integer written in the digits 0-9"),
    (["--stg-blocks", "1" * 5000], "stg: error: argument --stg-blocks: 11111111... (5000 digits) out of range"),
    (["--stg-blocks", "\uff12"], "stg: error: argument --stg-blocks: must be block numbers separated by commas"),
    (["--prompt", "\x00"], "stg: error: --prompt must not contain control characters, got '\\x00' at position 0"),
    (["--prompt", "\u200b"], "stg: error: --prompt must be a text with at least one visible character"),
    (["--negative-prompt", "\x1b"], "stg: error: --negative-prompt must not contain control characters"),
    (["--cfg-rescale", "2"], "stg: error: --cfg-rescale must be a finite number in [0, 1]"),
    (["--stg-window-start", "0.5", "--stg-window-end", "0.5"],
     "stg: error: --stg-window-start must be less than --stg-window-end"),
    (["--stg-mode", "stg-x"], "stg: error: argument --stg-mode: invalid choice: 'stg-x'"),
    (["--fps", "0"], "stg: error: argument --fps: must be a number in [1, 60]"),
    (["--model", "tiny-i2v", "--image", "missing.png"], "stg: error: --image: cannot read missing.png"),
    (["--prompts-file", "missing.txt"], "stg: error: argument --prompts-file: not allowed with argument --prompt"),
    (["--model", "./no-such-folder"], "stg: error: --model: no such folder: ./no-such-folder"),
    (["--steps"], "stg: error: argument --steps: expected one argument"),
    (["--audio-cfg-scale", "7"], "stg: error: --audio-cfg-scale: this model makes no sound; leave it at its default"),
    (["--cfg-scale-2", "3"], "stg: error: --cfg-scale-2: this model has one expert; leave it at its default"),
])
def test_bad_input_is_one_line_and_exit_status_2(cache, tmp_path, capsys, argv, message):
    full = ["compare", *SMALL, "--prompt", "x", "--out", str(tmp_path / "out"), *argv]
    assert cli.main(full) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(message) and len(lines[0]) < 600, lines


def test_bad_input_is_refused_before_the_model_loads(tmp_path):
    """An image for a text-only model, a prompt nobody can have meant: refused at once, nothing built or loaded."""
    picture = tmp_path / "frame.png"
    Image.new("RGB", (32, 32)).save(picture)
    empty_cache = tmp_path / "cache"
    text_only = "stg: error: --image is not accepted: this model makes video from text"
    for argv, message in ((["--image", picture], text_only),
                          (["--prompt", "\x1b[31m"], "stg: error: --prompt must not contain control characters")):
        done = stg("compare", *SMALL, "--prompt", "x", *argv, "--out", tmp_path / "out", env={"STG_CACHE": empty_cache})
        assert done.returncode == 2 and error_lines(done.stderr) == [error_lines(done.stderr)[0]]
        assert error_lines(done.stderr)[0].startswith(message), done.stderr
        assert not empty_cache.exists()  # the tiny model was neither built nor loaded


def test_an_empty_negative_prompt_means_none(cache, tmp_path):
    done = stg("compare", *SMALL, "--prompt", "a red fox", "--negative-prompt", "", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "settings.json").read_text())["negative_prompt"] == ""


def test_help_is_instant_it_loads_no_model_library():
    """--help reads the settings table only: torch, diffusers and gradio take seconds to import."""
    probe = ("import runpy, sys\nsys.argv = ['stg', 'compare', '--model', 'ltx-video', '--help']\n"
             "try:\n    runpy.run_module('stg', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "heavy = ('torch', 'diffusers', 'transformers', 'gradio')\n"
             "print([m for m in heavy if m in sys.modules], file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "--cfg-scale" in done.stdout and done.stderr.strip().splitlines()[-1] == "[]", done.stderr


def test_file_errors(cache, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing but a comment\n\n")
    assert cli.main(["sweep", *SMALL, "--prompts-file", str(empty), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("has no prompts (blank lines and # comments are skipped)")
    long = tmp_path / "long.txt"
    long.write_text("fine\n" + "x" * 3000 + "\n")
    assert cli.main(["compare", *SMALL, "--prompts-file", str(long), "--out", str(tmp_path / "out")]) == 2
    assert f"{long} line 2: --prompt is too long" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # every prompt is checked before the first one runs
    assert cli.main(["compare", *SMALL, "--prompts-file", str(tmp_path / "missing.txt"), "--out", str(tmp_path)]) == 2
    assert "stg: error: --prompts-file: cannot read" in capsys.readouterr().err


def test_interrupt_exits_130_and_a_failed_run_1(cache, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Backend, "render", interrupted)
    assert cli.main(["compare", *SMALL, "--prompt", "x", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip().endswith("stg: interrupted")

    def failed(*args, **kwargs):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(Backend, "render", failed)
    assert cli.main(["compare", *SMALL, "--prompt", "x", "--out", str(tmp_path)]) == 1
    assert error_lines(capsys.readouterr().err)[-1] == \
        "stg: error: the run failed: RuntimeError: out of memory second line"


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_help_reads_like_a_manual(command, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for flag in SETTINGS + (["--candidate-blocks", "--panels-per-run"] if command == "sweep" else ["--stg-blocks"]):
        assert flag in text, flag
    for section in ("examples:", "exit status:", "files written", "figures", "defaults:", "ltx-video"):
        assert section in text, section
    assert re.search(r"exit status:\n  0 .*\n  1 .*\n  2 .*\n.*\n  130 ", text)
    assert "(default: preset)" in text


def test_help_shows_the_preset_defaults_of_the_model(capsys):
    assert cli.main(["compare", "--model", "ltx-video", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 40 for ltx-video)" in text and '(default: "19" for ltx-video)' in text


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: python -m stg" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2
    assert capsys.readouterr().err.startswith("stg: error: argument COMMAND: invalid choice")
