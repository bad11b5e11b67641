"""The settings table and the rules read from it, the same on every surface: the README, the command line (in this
process) and the running app (tiny model, through gradio_client)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError
from PIL import Image

from conftest import COMPARE_PARAMETERS, SMALL
from stg import cli, inputs, readme
from stg.values import MAX_IMAGE_BYTES

CLI_SMALL = ["--model", "tiny", "--steps", "2", "--num-frames", "9", "--height", "32", "--width", "32"]


def test_the_readme_lists_every_setting_as_the_table_has_it():
    text = readme.README.read_text()
    assert readme.written(text) == text, "run python -m stg.readme"
    assert inputs.reference() in text
    assert [s.name for s in inputs.SETTINGS if "compare" in s.commands] == COMPARE_PARAMETERS


def test_the_command_line_has_a_flag_for_every_setting(capsys):
    for command in ("compare", "sweep"):
        assert cli.main([command, "--help"]) == 0
        text = capsys.readouterr().out
        for setting in inputs.COMMANDS[command].settings:
            assert setting.flag in text, setting.flag


@pytest.mark.parametrize("blocks", [",", "1,,", "\u0661", "\uff12"])
def test_blocks_that_name_no_block_or_odd_digits_are_refused_everywhere(client, blocks, tmp_path, capsys):
    with pytest.raises(AppError, match=r"stg_blocks must be block numbers"):
        client.predict("a red fox", stg_blocks=blocks, **SMALL, api_name="/compare")
    argv = ["compare", *CLI_SMALL, "--prompt", "x", "--stg-blocks", blocks, "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    assert "argument --stg-blocks: must be block numbers" in capsys.readouterr().err


def test_sweep_rules_hold_on_the_command_line_too(tmp_path, capsys):
    many = ", ".join(map(str, range(17)))
    for extra, message in ((["--candidate-blocks", many], "--candidate-blocks: at most 16 blocks a sweep, got 17"),
                           (["--stg-scale", "0"], "--stg-scale must be above 0 for a block sweep")):
        argv = ["sweep", *CLI_SMALL, "--prompt", "x", "--out", str(tmp_path / "out"), *extra]
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_image_limits_hold_on_the_command_line_too(tmp_path, capsys):
    heavy = tmp_path / "heavy.png"
    Image.new("RGB", (8, 8)).save(heavy)
    heavy.write_bytes(heavy.read_bytes() + bytes(MAX_IMAGE_BYTES))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    for path, message in ((heavy, "--image is too large: at most 20 MB"),
                          (notes, "--image is not a picture pillow can read")):
        argv = ["compare", *CLI_SMALL, "--model", "tiny-i2v", "--prompt", "x", "--image", str(path),
                "--out", str(tmp_path / "out")]
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err


def test_empty_blocks_mean_the_default_blocks(client, backend):
    *_, settings_path, _ = client.predict("a red fox", stg_blocks=" ", **SMALL, api_name="/compare")
    right = json.loads(Path(settings_path).read_text())["panels"][1]["guidance"]
    assert right["stg_blocks"] == backend.preset.defaults["stg_blocks"]
    _, table, *_ = client.predict("a red fox", candidate_blocks="", **SMALL, api_name="/sweep")
    assert [row[0] for row in table["data"]] == [None, *backend.candidate_blocks()]


def test_an_empty_negative_prompt_means_none_and_none_the_presets(client, backend):
    *_, settings_path, _ = client.predict("a red fox", negative_prompt="", **SMALL, api_name="/compare")
    assert json.loads(Path(settings_path).read_text())["negative_prompt"] == ""
    *_, settings_path, _ = client.predict("a red fox", negative_prompt=None, **SMALL, api_name="/compare")
    assert json.loads(Path(settings_path).read_text())["negative_prompt"] == backend.preset.defaults["negative_prompt"]
