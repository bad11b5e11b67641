"""The page in Debian's Chromium, driven by Playwright: type a prompt, Generate, both videos play; the block explorer.

STG_SCREENSHOT=assets/screenshot.png also writes the page's screenshot there (the README's).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

PLAYING = """([id, since]) => {
    const v = document.querySelector(`#${id} video`);
    return v !== null && v.readyState >= 2 && v.videoWidth > 0 && v.currentTime > since;
}"""
STATE = """(id) => {
    const v = document.querySelector(`#${id} video`);
    return v && {ready: v.readyState, width: v.videoWidth, height: v.videoHeight, time: v.currentTime,
                 paused: v.paused, loop: v.loop, src: v.currentSrc};
}"""


@pytest.fixture
def page(tmp_path):
    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), "Chromium is installed by .ci/run (apt-get install chromium)"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1360, "height": 900}, device_scale_factor=1)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def test_generate_in_the_browser_plays_both_videos(server, page, tmp_path):
    page.goto(server)
    page.get_by_label("Prompt", exact=True).fill("A red fox walks through the snow in a forest, cinematic")
    page.get_by_role("button", name="Generate").click()

    for panel in ("cfg-video", "stg-video", "both-video"):
        page.wait_for_function(PLAYING, arg=[panel, 0], timeout=120_000)
    for panel in ("cfg-video", "stg-video"):
        first = page.evaluate(STATE, panel)
        assert first["ready"] >= 2 and first["width"] > 0, first
        # currentTime advances: the video really plays (and loops past its end).
        page.wait_for_function(PLAYING, arg=[panel, first["time"]], timeout=10_000)

    seed = page.get_by_label("Seed used").input_value()
    assert seed.isdigit()
    # The figures under each panel, read from the settings JSON.
    page.locator("#stg-figures").get_by_text("vs CFG").first.wait_for(timeout=30_000)
    assert "motion" in page.locator("#cfg-figures").inner_text()
    assert "STG" in page.locator("#stg-figures").inner_text()

    page.wait_for_timeout(500)  # let the progress overlays fade
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    target = os.environ.get("STG_SCREENSHOT")
    if target:  # the README's copy: 256 colours keep the file small
        from PIL import Image

        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Image.open(shot).convert("RGB").quantize(256).save(target, optimize=True)


def test_page_shows_header_banner_and_limits(server, page, backend):
    page.goto(server)
    body = page.locator("body")
    body.get_by_text("Spatiotemporal Skip Guidance").first.wait_for()
    text = body.inner_text()
    assert "eps = eps_u + w (eps_c - eps_u) + s (eps_c - eps_p)" in text
    assert page.locator('a[href="https://arxiv.org/abs/2411.18664"]').count() == 1
    assert "random" in page.locator(".prose.banner").inner_text()
    assert f"{backend.depth} blocks" in text and str(backend.device) in text
    # A text-only model: no image input on the page.
    assert page.get_by_label("First frame").count() == 0


def test_bad_input_on_the_page_names_the_field(server, page, backend):
    page.goto(server)
    page.get_by_label("Prompt", exact=True).fill("a red fox")
    page.get_by_text("Advanced").nth(1).click()  # the CFG + STG column's
    blocks = page.get_by_label(f"Blocks (this model has {backend.depth}: 0-{backend.depth - 1})")
    blocks.wait_for(state="visible")
    page.wait_for_timeout(500)  # the accordion's content settles after it opens
    blocks.fill(str(backend.depth + 5))
    blocks.blur()
    page.get_by_role("button", name="Generate").click()
    page.get_by_text(f"stg_blocks [{backend.depth + 5}] out of range").first.wait_for(timeout=30_000)
    assert "Traceback" not in page.locator("body").inner_text()


def test_stop_button_stops_within_a_step_and_the_next_run_works(server, page, runs, faults):
    import time

    from webapp import gpu

    page.goto(server)
    page.get_by_label("Prompt", exact=True).fill("a red fox")
    faults.step_delay = 0.5  # each step half a second slower, as on a slow GPU
    begun = time.monotonic()
    page.get_by_role("button", name="Generate").click()
    deadline = time.monotonic() + 30
    while not gpu.CONTROLS and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.8)  # into the run
    stopped_at = time.monotonic()
    page.get_by_role("button", name="Stop").click()
    while time.monotonic() < deadline:
        records = [r for r in runs if r.started >= begun]
        if records:
            break
        time.sleep(0.05)
    record = records[-1]
    assert record.status == "stopped" and record.step < record.steps, record
    assert record.released - stopped_at < 2 * 0.5 + 0.5, record
    faults.step_delay = 0.0
    page.get_by_role("button", name="Generate").click()
    for panel in ("cfg-video", "stg-video"):
        page.wait_for_function(PLAYING, arg=[panel, 0], timeout=120_000)


def test_an_example_prompt_runs_and_is_cached(server, page):
    page.goto(server)
    page.get_by_text("A cat walks on the grass, realistic style.").click()
    for panel in ("cfg-video", "stg-video", "both-video"):
        page.wait_for_function(PLAYING, arg=[panel, 0], timeout=120_000)
    assert page.get_by_label("Prompt", exact=True).input_value() == "A cat walks on the grass, realistic style."
    page.locator("#stg-figures").get_by_text("vs CFG").first.wait_for(timeout=30_000)  # figures of a cached example too


def test_block_explorer_plays_its_grid_and_a_row_click_sets_the_blocks(server, page, backend):
    page.goto(server)
    page.get_by_label("Prompt", exact=True).fill("a red fox jumps over a log")
    page.get_by_role("tab", name="Block explorer").click()
    explorer_prompt = page.get_by_label("Prompt to explore")
    explorer_prompt.wait_for()
    page.wait_for_function("() => document.querySelector('#explorer-settings') !== null")
    assert explorer_prompt.input_value() == "a red fox jumps over a log"  # brought over from the Compare tab
    page.get_by_label("Candidate blocks").fill("1, 2")
    steps = page.locator("#explorer-settings").get_by_label("number input for Steps")
    steps.fill("2")
    steps.press("Enter")
    page.get_by_role("button", name="Explore").click()

    page.wait_for_function(PLAYING, arg=["grid-video", 0], timeout=120_000)
    first = page.evaluate(STATE, "grid-video")
    assert first["width"] > 2 * 32 and first["height"] > 2 * 32, first  # 3 cells in a 2 x 2 grid
    page.wait_for_function(PLAYING, arg=["grid-video", first["time"]], timeout=10_000)
    table = page.locator("#sweep-table")
    for label in ("CFG", "block 1", "block 2"):
        table.get_by_role("gridcell", name=label, exact=True).wait_for()
    assert "Most motion" in page.locator("#sweep-summary").inner_text()

    table.get_by_role("gridcell", name="block 2", exact=True).click()
    page.locator("#sweep-note").get_by_text("Block 2 is now in the Compare tab").wait_for(timeout=10_000)
    page.locator(".toast-body").get_by_text("Block 2 is now in the Compare tab's blocks.").wait_for()
    page.get_by_role("tab", name="Compare").click()
    page.get_by_text("Advanced").nth(1).click()  # the CFG + STG column's
    blocks = page.get_by_label(f"Blocks (this model has {backend.depth}: 0-{backend.depth - 1})")
    blocks.wait_for(state="visible")
    assert blocks.input_value() == "2"
