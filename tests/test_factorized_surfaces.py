"""SVD (an image alone, no prompt) and Open-Sora 1.2 (text, factorized attention) on every surface: the served app
over HTTP, and the command line, each with its temporal pass, and their bad input refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import stg
from stg import cli

from conftest import launched

SVD_SMALL = dict(steps=2, num_frames=3, height=64, width=128)
OPEN_SORA_SMALL = dict(steps=2, num_frames=17, height=32, width=32)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("image") / "gradient.png"
    Image.linear_gradient("L").convert("RGB").resize((128, 64)).save(path)
    return path


def _client(url, tmp_path):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp_path / "downloads"))


@pytest.fixture(scope="module")
def svd_server(app_module):
    from webapp import build_demo

    with launched(app_module, build_demo(stg.Backend.load("tiny-svd"), "no GPU found")) as url:
        yield url


@pytest.fixture(scope="module")
def open_sora_server(app_module):
    from webapp import build_demo

    with launched(app_module, build_demo(stg.Backend.load("tiny-open-sora"), "no GPU found")) as url:
        yield url


def _panels(settings: str) -> list[dict]:
    return json.loads(Path(settings).read_text())["panels"]


def test_svd_over_http_takes_an_image_and_no_prompt(svd_server, image, tmp_path):
    client = _client(svd_server, tmp_path)
    parameters = {p["parameter_name"]: p for p in client.view_api(print_info=False, return_format="dict")
                  ["named_endpoints"]["/compare"]["parameters"]}
    assert parameters["prompt"]["parameter_has_default"]  # the API asks for no prompt: one stays the same shape
    cfg, both, side_by_side, settings, seed = client.predict(
        image=handle_file(str(image)), seed=5, temporal_stg_scale=0.75, temporal_stg_blocks="3", **SVD_SMALL,
        api_name="/compare")[:5]
    assert seed == 5 and all(Path(p).stat().st_size > 0 for p in (cfg, both, side_by_side))
    left, right = _panels(settings)
    assert left["guidance"]["temporal_stg_scale"] == 0
    assert right["guidance"]["temporal_stg_scale"] == 0.75 and right["guidance"]["temporal_stg_blocks"] == [3]
    with pytest.raises(AppError, match=r"image is required"):
        client.predict(**SVD_SMALL, api_name="/compare")
    with pytest.raises(AppError, match=r"temporal_stg_blocks .*0.*15"):
        client.predict(image=handle_file(str(image)), temporal_stg_blocks="16", **SVD_SMALL, api_name="/compare")


def test_open_sora_over_http_runs_both_passes_and_refuses_a_step_cache(open_sora_server, tmp_path):
    client = _client(open_sora_server, tmp_path)
    *_, settings, seed = client.predict(prompt="a red fox", seed=2, temporal_stg_scale=0.5, temporal_stg_blocks="1",
                                        **OPEN_SORA_SMALL, api_name="/compare")
    left, right = _panels(settings)
    assert seed == 2 and right["guidance"]["temporal_stg_blocks"] == [1] and left["guidance"]["stg_scale"] == 0
    with pytest.raises(AppError, match=r"cache"):
        client.predict(prompt="a red fox", cache=0.1, **OPEN_SORA_SMALL, api_name="/compare")
    with pytest.raises(AppError, match=r"prompt"):
        client.predict(prompt="", **OPEN_SORA_SMALL, api_name="/compare")


def _flags(sizes: dict) -> list[str]:
    return [item for name, value in sizes.items() for item in (f"--{name.replace('_', '-')}", str(value))]


def test_svd_on_the_command_line(image, tmp_path, capsys):
    def argv(*extra, out="svd"):
        return ["compare", "--model", "tiny-svd", *_flags(SVD_SMALL), "--temporal-stg-scale", "0.25",
                "--out", str(tmp_path / out), *extra]

    assert cli.main(argv("--image", str(image))) == 0
    document = json.loads(next((tmp_path / "svd").rglob("*.json")).read_text())
    assert document["panels"][1]["guidance"]["temporal_stg_scale"] == 0.25 and document["prompt"] == ""
    assert cli.main(argv(out="no-image")) == 2
    assert "--image is required: this model makes video from an image" in capsys.readouterr().err
    assert cli.main(argv("--image", str(image), "--prompt", "a red fox", out="prompted")) == 2
    assert "prompt is not accepted" in capsys.readouterr().err


def test_open_sora_on_the_command_line(tmp_path, capsys):
    def argv(*extra, out="open-sora"):
        return ["compare", "--model", "tiny-open-sora", *_flags(OPEN_SORA_SMALL), "--prompt", "a red fox",
                "--out", str(tmp_path / out), *extra]

    assert cli.main(argv("--temporal-stg-blocks", "3")) == 0
    document = json.loads(next((tmp_path / "open-sora").rglob("*.json")).read_text())
    assert document["panels"][1]["guidance"]["temporal_stg_blocks"] == [3]
    assert cli.main(argv("--temporal-stg-blocks", "4", out="too-deep")) == 2
    assert "--temporal-stg-blocks [4] out of range: this model has 4 blocks, allowed 0-3" in capsys.readouterr().err
