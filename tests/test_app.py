"""The HTTP API of the running app (tiny model), through gradio_client."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from gradio_client.exceptions import AppError

from conftest import COMPARE_PARAMETERS, GENERATE_PARAMETERS, SMALL, app_process, served
from stg import video

GAP = 4


def _path(value) -> str:
    return value["video"] if isinstance(value, dict) else value


def test_endpoints_and_parameter_names(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    compare = api["/compare"]["parameters"]
    assert [p["parameter_name"] for p in compare] == COMPARE_PARAMETERS
    required = [p["parameter_name"] for p in compare if not p["parameter_has_default"]]
    assert required == ["prompt"]
    assert len(api["/compare"]["returns"]) == 5

    generate = [p["parameter_name"] for p in api["/generate"]["parameters"]]
    assert generate == GENERATE_PARAMETERS
    assert len(api["/generate"]["returns"]) == 3
    # Nothing in a request picks the model.
    assert not any("model" in p["parameter_name"] for e in api.values() for p in e["parameters"])


def test_compare_returns_three_playable_videos(client, backend):
    cfg, stg_, both, settings_path, seed = client.predict(
        prompt="a red fox runs through the snow", seed=7, fps=12, stg_blocks="1, 2", stg_mode="stg-r",
        **SMALL, api_name="/compare")
    for path in (cfg, stg_):
        info = video.probe(_path(path))
        assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
        assert (info["frames"], info["height"], info["width"]) == (9, 32, 64)
        assert info["fps"] == 12
    info = video.probe(_path(both))
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["frames"] == 9
    factor = video.enlargement([np.zeros((1, 32, 64, 3), np.uint8)])
    assert info["width"] == 2 * 64 * factor + GAP  # the two panels, enlarged for their captions, and the gap
    assert info["height"] > 32 * factor  # captions above the pictures
    frames, _ = video.read_video(_path(both))
    assert frames.shape == (9, info["height"], info["width"], 3)

    assert seed == 7
    settings = json.loads(Path(settings_path).read_text())
    assert settings["model"] == "tiny" and settings["seed"] == 7 and settings["fps"] == 12
    assert (settings["steps"], settings["num_frames"], settings["height"], settings["width"]) == (2, 9, 32, 64)
    left, right = settings["panels"]
    assert left["guidance"]["stg_scale"] == 0 and left["label"].startswith("CFG")
    assert right["guidance"]["stg_blocks"] == [1, 2] and right["guidance"]["stg_mode"] == "stg-r"
    assert left["frames_sha256"] != right["frames_sha256"]


def test_defaults_come_from_the_preset(client, backend):
    defaults = backend.preset.defaults
    *_, settings_path, seed = client.predict("a cat walks on the grass", steps=2, api_name="/compare")
    settings = json.loads(Path(settings_path).read_text())
    assert seed == 0
    assert (settings["num_frames"], settings["height"], settings["width"]) == (
        defaults["num_frames"], defaults["height"], defaults["width"])
    assert settings["negative_prompt"] == defaults["negative_prompt"]
    left, right = (p["guidance"] for p in settings["panels"])
    assert left["cfg_scale"] == defaults["cfg_scale"] and left["rescale"] == defaults["cfg_rescale"]
    assert right["stg_scale"] == defaults["stg_scale"] and right["stg_mode"] == defaults["stg_mode"]
    assert right["stg_blocks"] == defaults["stg_blocks"] and right["rescale"] == defaults["rescale"]


def test_bad_blocks_are_refused_and_the_next_request_works(client, backend):
    top = backend.depth - 1
    with pytest.raises(AppError, match=rf"stg_blocks.*0-{top}"):
        client.predict("a red fox", stg_blocks=str(backend.depth + 3), **SMALL, api_name="/compare")
    with pytest.raises(AppError, match=r"stg_blocks must be block numbers"):
        client.predict("a red fox", stg_blocks="two", **SMALL, api_name="/compare")
    cfg, *_ , seed = client.predict("a red fox", stg_blocks=str(top), seed=3, **SMALL, api_name="/compare")
    assert video.probe(_path(cfg))["frames"] == 9 and seed == 3


def test_side_by_side_captions_stay_readable_at_the_smallest_size(client):
    """At 32 x 32 the pictures are enlarged (pixels repeated) and the caption band is shorter than they are."""
    *_, both, settings_path, _ = client.predict("a red fox", stg_blocks="1, 2", **{**SMALL, "width": 32},
                                                api_name="/compare")
    frames, _ = video.read_video(_path(both))
    factor = video.enlargement([np.zeros((1, 32, 32, 3), np.uint8)])
    assert 32 * factor >= video.CAPTIONED_WIDTH and frames.shape[2] == 2 * 32 * factor + GAP
    band = frames.shape[1] - 32 * factor
    assert 0 < band < 32 * factor / 2, frames.shape
    for panel in json.loads(Path(settings_path).read_text())["panels"]:
        _, lines = video.caption_lines(panel["label"], 32 * factor)
        assert " ".join(lines).split() == panel["label"].split()  # no word broken


def test_generate_makes_one_panel(client):
    path, settings_path, seed = client.predict("a blue whale swims in the ocean", seed=11, stg_scale=0.5,
                                               **SMALL, api_name="/generate")
    info = video.probe(_path(path))
    assert (info["codec"], info["pix_fmt"], info["frames"], info["width"], info["height"]) == ("h264", "yuv420p", 9, 64, 32)
    settings = json.loads(Path(settings_path).read_text())
    assert seed == 11 and len(settings["panels"]) == 1
    assert settings["panels"][0]["guidance"]["stg_scale"] == 0.5


def test_generate_means_what_the_compare_panels_mean(client, backend):
    """/generate is the CFG + STG column: stg_scale 0 keeps its rescale, and with rescale 0 too it is the CFG panel's
    video; stg_cfg_scale follows cfg_scale on /compare, as --stg-cfg-scale follows --cfg-scale."""
    *_, settings_path, _ = client.predict("a red fox", seed=3, cfg_scale=4, **SMALL, api_name="/compare")
    cfg_panel, stg_panel = json.loads(Path(settings_path).read_text())["panels"]
    assert cfg_panel["guidance"]["cfg_scale"] == stg_panel["guidance"]["cfg_scale"] == 4

    def generate(**settings):
        _, settings_path, _ = client.predict("a red fox", seed=3, stg_cfg_scale=4, stg_scale=0, **settings, **SMALL,
                                             api_name="/generate")
        (panel,) = json.loads(Path(settings_path).read_text())["panels"]
        return panel

    # The same guidance, so the same video (one panel alone or beside another: test_engine holds them equal).
    alone, rescaled = generate(rescale=0), generate()
    used = lambda panel: {k: panel["guidance"][k] for k in ("cfg_scale", "stg_scale", "rescale")}  # noqa: E731
    assert used(alone) == used(cfg_panel) and alone["label"] == cfg_panel["label"] == "CFG: w 4"
    rescale = backend.preset.defaults["rescale"]
    assert used(rescaled) == {**used(cfg_panel), "rescale": rescale} and rescale > 0
    assert rescaled["label"] == f"CFG: w 4, rescale {rescale:g}"


def test_the_readme_http_example_runs_on_the_model_the_readme_commands_give(server, backend, tmp_path, monkeypatch):
    """The README's set-up commands give the offline model on a machine without a GPU: its API example runs there."""
    from stg import readme

    text = readme.README.read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "gradio_client" in block)
    assert 'Client("http://127.0.0.1:7860/")' in example
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(example.replace("http://127.0.0.1:7860/", server), scope)
    assert all(Path(scope[name]).stat().st_size > 0 for name in ("cfg", "stg", "both", "video"))
    assert json.loads(Path(scope["settings"]).read_text())["model"] == backend.model


def test_same_seed_same_frames_and_none_seed_is_random(client):
    first = json.loads(Path(client.predict("a dog", seed=5, **SMALL, api_name="/compare")[3]).read_text())
    again = json.loads(Path(client.predict("a dog", seed=5, **SMALL, api_name="/compare")[3]).read_text())
    assert [p["frames_sha256"] for p in first["panels"]] == [p["frames_sha256"] for p in again["panels"]]
    *_, seed = client.predict("a dog", seed=None, **SMALL, api_name="/generate")
    assert 0 <= seed < 2**32


def test_load_falls_back_to_the_lab_model_without_a_gpu(app_module, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the default model would load")
    backend, reason = app_module.load_backend(None)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("STG Studio:")]
    assert backend.model == "lab" and "no GPU" in reason
    assert len(lines) == 1 and "lab" in lines[0]
    assert not backend.preset.tiny and "synthetic" in backend.preset.notice


def test_parse_blocks(backend):
    from stg.values import parse_blocks

    assert parse_blocks("14, 19", 28, [19]) == [14, 19]
    assert parse_blocks(" 3 ", 28, [19]) == [3]
    assert parse_blocks("", 28, [19]) == [19]
    assert parse_blocks(None, 28, [19]) == [19]
    for bad in ("a", "1.5", "-1", "1;2"):
        with pytest.raises(Exception, match="stg_blocks"):
            parse_blocks(bad, 28, [19])


def test_header_and_banner(backend):
    from webapp.texts import banner_markdown, header_markdown

    header = header_markdown(backend)
    assert "eps = eps_u + w (eps_c - eps_u) + s (eps_c - eps_p)" in header
    assert "https://arxiv.org/abs/2411.18664" in header and str(backend.device) in header
    assert "random" in banner_markdown(backend)


def test_a_model_with_sound_gives_each_panel_its_own(app_module, tmp_path, monkeypatch):
    """LTX-2: each panel's file has its sound, the side-by-side file both (CFG first); nothing autoplays over
    another; the model's own guidance is on the page at its preset's values."""
    from gradio_client import Client

    import stg
    from conftest import launched

    monkeypatch.setenv("STG_CACHE", str(tmp_path / "cache"))
    backend = stg.Backend.load("tiny-ltx2")
    demo = app_module.build_demo(backend)
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    assert not any(blocks[name].autoplay for name in ("cfg-video", "stg-video", "both-video"))
    shown = {b.label: b.value for b in demo.blocks.values() if getattr(b, "visible", False)
             and getattr(b, "label", None) in ("Modality guidance m", "Sound: w", "Second expert's w")}
    assert shown == {"Modality guidance m": "3", "Sound: w": "7"}
    with launched(app_module, demo) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        cfg, stg_path, both, settings, _ = client.predict("a red fox", steps=2, num_frames=9, height=64, width=64,
                                                          api_name="/compare")
    titles = [[s["title"].split(":")[0] for s in video.audio_streams(_path(p))] for p in (cfg, stg_path, both)]
    assert titles == [["CFG"], ["CFG + STG"], ["CFG", "CFG + STG"]]
    guidance = json.loads(Path(settings).read_text())["panels"][0]["guidance"]
    assert (guidance["modality_scale"], guidance["audio_cfg_scale"]) == (3.0, 7.0)


def test_an_image_to_video_model_suggests_its_full_size_model():
    import stg
    from webapp.texts import banner_markdown

    assert "`--model ltx-video-i2v`" in banner_markdown(stg.Backend.load("tiny-i2v"))


# -- app.py as a process ---------------------------------------------------------------------------
@pytest.mark.parametrize("model, line", [
    ("ltx-video", r"STG Studio: cannot load 'ltx-video': OSError: .*; --model lab runs offline"),
    ("no-such-model", r"STG Studio: model: 'no-such-model' is neither a preset .* nor a loadable .*"),
])
def test_a_model_that_cannot_load_ends_the_app_in_one_line(model, line, tmp_path):
    process = app_process("--model", model, cwd=tmp_path, HF_HOME=str(tmp_path / "hub"))  # an empty hub cache
    output, _ = process.communicate(timeout=300)
    lines = [text for text in output.splitlines() if text.strip()]
    assert process.returncode == 1 and len(lines) == 1 and re.fullmatch(line, lines[0]), output


def test_the_server_log_says_what_matters_and_no_more(tmp_path):
    """No library deprecation notes or loading bars when the app starts, no progress bars when it runs."""
    from gradio_client import Client

    with served("tiny", tmp_path) as (url, log):
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        client.predict("a red fox", **SMALL, api_name="/compare")
    assert "Running on local URL" in log.text
    for noise in ("Warning", "Loading", "it/s", "Traceback"):
        assert noise not in log.text, log.text
