"""`python -m stg`'s output folder and summary: a folder it cannot write is refused before any work, an earlier run is
not replaced unless asked, means are over the same prompts for both panels, and the flags that a newcomer gets wrong
are named in the message: empty block items, a device torch cannot use, values of the wrong type."""

from __future__ import annotations

import csv
import os
from statistics import fmean

import pytest
import torch

from stg import cli
from test_cli import SMALL, error_lines, stg


def test_an_output_folder_that_cannot_be_made_is_refused_before_the_model_loads(tmp_path):
    empty_cache = tmp_path / "cache"
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for out, message in ((blocker / "run", "--out: cannot write in"),
                         ("/proc/forbidden/x", "--out: cannot write in /proc/forbidden/x")):
        done = stg("compare", *SMALL, "--prompt", "a red fox", "--out", out, env={"STG_CACHE": str(empty_cache)})
        assert done.returncode == 2 and error_lines(done.stderr)[0].startswith(f"stg: error: {message}"), done.stderr
    assert not empty_cache.exists()  # the tiny model was neither built nor loaded


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in a read-only folder")
def test_a_read_only_output_folder_is_refused(tmp_path, capsys):
    tmp_path.chmod(0o500)
    try:
        assert cli.main(["compare", *SMALL, "--prompt", "x", "--out", str(tmp_path / "out")]) == 2
    finally:
        tmp_path.chmod(0o700)
    assert "--out: cannot write in" in capsys.readouterr().err


def test_an_earlier_run_is_not_replaced_unless_asked(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", *SMALL, "--prompt", "a red fox", "--out", str(out)]
    assert cli.main(argv) == 0
    written = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    assert cli.main([*argv, "--seed", "3"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines[-1] == (f"stg: error: --out: {out} holds an earlier run (settings.json); choose another folder, or "
                         "add --overwrite to replace its files")
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == written  # untouched
    assert cli.main([*argv, "--seed", "3", "--overwrite"]) == 0
    assert '"seed": 3' in (out / "settings.json").read_text()

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\n")
    batch = ["compare", *SMALL, "--prompts-file", str(prompts), "--out", str(tmp_path / "batch")]
    assert cli.main(batch) == 0
    assert cli.main(batch) == 2
    assert "holds an earlier run (summary.csv, 001-a-red-fox/settings.json)" in capsys.readouterr().err
    assert "--overwrite" in "".join(stg("compare", "--help").stdout.split())


def test_means_are_over_the_prompts_where_both_panels_have_the_figure(tmp_path, capsys):
    """On the shapes model, a prompt outside its grammar makes a CFG video with no shape (no edge, no colour to
    measure) while the CFG + STG video has one: that prompt counts in no shape figure's mean, for either panel."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moving right on a blue background\na purple elephant dancing\n")
    assert cli.main(["compare", "--model", "shapes", "--prompts-file", str(prompts), "--out", str(tmp_path / "o")]) == 0
    table = capsys.readouterr().out.splitlines()
    with open(tmp_path / "o" / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    runs, mean, count = rows[:2], rows[2], rows[3]
    assert (mean["prompt"], count["prompt"]) == ("mean", "prompts in the mean")
    assert runs[1]["cfg_edge_px"] == "" and runs[1]["stg_edge_px"] != ""  # the premise: one panel lacks the figure
    for column in [c for c in rows[0] if c.startswith(("cfg_", "stg_")) and c not in ("cfg_seen", "stg_seen")]:
        figure = column.split("_", 1)[1]
        both = [r for r in runs if r[f"cfg_{figure}"] != "" and r[f"stg_{figure}"] != ""]
        assert int(count[column]) == len(both), column
        assert float(mean[column]) == pytest.approx(fmean(float(r[column]) for r in both), abs=1e-3), column
    assert count["stg_edge_px"] == "1" and count["stg_motion"] == "2"
    # The printed table has the same rows, each prompt whole (none cut short).
    assert table[-1].split()[:1] == ["2"] and table[-1].endswith("prompts in the mean")
    assert any(line.endswith("a red circle moving right on a blue background") for line in table)


@pytest.mark.parametrize("blocks", ["1,,2", "1,", " , ", ",2"])
def test_an_empty_block_item_is_a_typo_refused_by_name(tmp_path, capsys, blocks):
    assert cli.main(["compare", *SMALL, "--prompt", "x", "--stg-blocks", blocks, "--out", str(tmp_path / "o")]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"stg: error: argument --stg-blocks: must be block numbers separated by commas, such as \"14, 19\", "
        f"got {blocks!r}: an item between commas is empty"]
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA torch with a GPU takes --device cuda")
def test_a_device_torch_cannot_use_is_named_with_what_is_missing(tmp_path, capsys):
    assert cli.main(["compare", *SMALL, "--prompt", "x", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    line = error_lines(capsys.readouterr().err)[-1]
    assert line.startswith("stg: error: argument --device: 'cuda'"), line
    if torch.version.cuda is None:  # a CPU build, as CI installs
        assert f"this torch ({torch.__version__}) is a CPU build: install a CUDA build, or use cpu" in line
    else:  # a CUDA build on a machine without a GPU, as a Space's torch is before ZeroGPU lends one
        assert line.endswith("'cuda': this machine has 0 CUDA GPUs that torch can use: use cpu"), line
