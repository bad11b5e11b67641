"""The app around the shapes model, as `python app.py` shows it without a GPU: the banner, the words it knows, the
note on others, and the ground-truth figures under each video, over HTTP and in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

import stg
from stg.shapes import judge

from conftest import PLAYING, launched

QUICK = dict(steps=4)


@pytest.fixture(scope="module")
def shapes_server(app_module):
    from webapp import build_demo

    backend = stg.Backend.load("shapes")
    with launched(app_module, build_demo(backend, "no GPU found")) as url:
        yield url


def test_compare_over_http_records_the_shape_figures(shapes_server, tmp_path):
    from gradio_client import Client

    client = Client(shapes_server, verbose=False, download_files=str(tmp_path))
    *_, settings, seed = client.predict(prompt="a yellow square moving down on a blue background", seed=3, **QUICK,
                                        api_name="/compare")
    document = json.loads(Path(settings).read_text())
    assert document["model"] == "shapes" and seed == 3
    for panel in document["panels"]:
        figures = panel["figures"]
        assert {"motion", "prompt_right", "seen", *judge.QUALITY} <= set(figures)
        assert figures["seen"].endswith("background") and 0 <= figures["prompt_right"] <= 4
    # The model draws nothing at sizes it was not trained on, so it takes only its own.
    with pytest.raises(AppError, match="num_frames must be exactly 9, got 17"):
        client.predict(prompt="a red circle moving left on a blue background", num_frames=17, **QUICK,
                       api_name="/compare")


def test_page_says_what_the_model_knows_and_shows_its_figures(shapes_server, page):
    page.goto(shapes_server)
    banner = page.locator(".prose.banner").inner_text()
    assert "synthetic" in banner and "no GPU found" in banner
    hint = page.get_by_text("It knows one sentence").first
    assert "circle" in hint.inner_text() and "directions" in hint.inner_text()
    prompt = page.locator("label", has=hint).locator("textarea")  # the hint stands in the prompt box's label
    prompt.fill("a purple fox moving left on a blue background")
    page.locator("#prompt-note").get_by_text("never saw").wait_for(timeout=30_000)
    assert "'purple'" in page.locator("#prompt-note").inner_text()
    frames = page.get_by_label("Frames", exact=True)  # its one size: shown, not offered
    assert frames.input_value() == "9" and frames.is_disabled()
    prompt.fill("a red circle moving right on a blue background")
    page.wait_for_function("() => !document.querySelector('#prompt-note').innerText.includes('never saw')",
                           timeout=30_000)
    page.get_by_role("button", name="Generate").click()  # at the preset's defaults, as a visitor sees it
    for panel in ("cfg-video", "stg-video"):
        page.wait_for_function(PLAYING, arg=[panel, 0], timeout=120_000)
    page.locator("#cfg-figures").get_by_text("prompt_right").wait_for(timeout=30_000)
    assert "seen" in page.locator("#stg-figures").inner_text()
    # The side-by-side file's captions are in its top band: its download button must not sit on them.
    video = page.locator("#both-video video").bounding_box()
    button = page.locator("#both-video").get_by_role("button", name="Download").bounding_box()
    assert button["y"] >= video["y"] + video["height"] or button["y"] + button["height"] <= video["y"]
