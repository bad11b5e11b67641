"""The page of the lab model, the app's offline default (`python app.py` without a GPU), in Chromium: its grammar, a
comparison at the preset's defaults with the lab figures under each video, and its scale sweep section.
STG_SCREENSHOT=assets/screenshot.png also writes the page's screenshot there (the README's)."""

from __future__ import annotations

import os

import stg
from stg.lab import judge

from conftest import PLAYING, launched

PROMPT = "two small yellow squares bouncing slowly on a striped grey background"


def test_the_offline_default_compares_and_judges_in_the_browser(app_module, page, tmp_path):
    from webapp import build_demo

    with launched(app_module, build_demo(stg.Backend.load("lab"), "no GPU found")) as url:
        page.goto(url)
        assert "no GPU found" in page.locator(".prose.banner").inner_text()
        hint = page.get_by_text("It knows one sentence").first
        assert "bouncing" in hint.inner_text() and "striped" in hint.inner_text()
        page.locator("label", has=hint).locator("textarea").fill(PROMPT)  # the hint stands in the prompt's label
        frames = page.get_by_label("Frames", exact=True)
        assert frames.input_value() == "17" and frames.is_disabled()
        page.get_by_role("button", name="Generate").click()  # at the preset's defaults, as a visitor sees it
        for panel in ("cfg-video", "stg-video"):
            page.wait_for_function(PLAYING, arg=[panel, 0], timeout=120_000)
        for panel in ("#cfg-figures", "#stg-figures"):
            page.locator(panel).get_by_text("prompt_right").wait_for(timeout=30_000)
            figures = page.locator(panel).inner_text()
            assert all(name in figures for name in ("seen", "motion", *judge.QUALITY)), figures
        assert page.get_by_text("Scale sweep for this prompt").first.is_visible()

        page.wait_for_timeout(500)  # let the progress overlays fade
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    target = os.environ.get("STG_SCREENSHOT")
    if target:  # the README's copy: 256 colours keep the file small
        from PIL import Image

        Image.open(shot).convert("RGB").quantize(256).save(target, optimize=True)
