"""The page in Debian's Chromium, driven by Playwright: type a prompt, Generate, both videos play; the block explorer."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from conftest import PLAYING

STATE = """(id) => {
    const v = document.querySelector(`#${id} video`);
    return v && {ready: v.readyState, width: v.videoWidth, height: v.videoHeight, time: v.currentTime,
                 paused: v.paused, loop: v.loop, src: v.currentSrc};
}"""


def test_generate_in_the_browser_plays_both_videos(server, page):
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
    page.get_by_text("Advanced", exact=True).last.click()  # the CFG + STG column's
    blocks = page.get_by_label(f"Blocks (this model has {backend.depth}: 0-{backend.depth - 1})")
    blocks.wait_for(state="visible")
    page.wait_for_timeout(500)  # the accordion's content settles after it opens
    blocks.fill(str(backend.depth + 5))
    blocks.blur()
    page.get_by_role("button", name="Generate").click()
    label = f"Blocks (this model has {backend.depth}: 0-{backend.depth - 1})"
    page.get_by_text(f"{label} [{backend.depth + 5}] out of range").first.wait_for(timeout=30_000)
    assert "Traceback" not in page.locator("body").inner_text()


def test_a_models_own_guidance_left_empty_means_what_its_box_says(page, tmp_path):
    """LTX-2's sound settings start empty (None: the video's value), not at 0 as Gradio's number box would show and
    send them; a value written in is used, and one that is not a number is refused by the field's name."""
    from conftest import served

    with served("tiny-ltx2", tmp_path) as (url, _):
        page.goto(url)
        page.get_by_label("Prompt", exact=True).fill("a red fox")
        page.get_by_text("This model's own guidance").first.click()
        sound_stg, sound_rescale = page.get_by_label("Sound: STG scale s"), page.get_by_label("Sound: rescale")
        sound_stg.wait_for(state="visible")
        assert sound_stg.input_value() == "" and sound_stg.get_attribute("placeholder") == "empty: the video's s"
        assert page.get_by_label("Modality guidance m", exact=True).input_value() == "3"  # the preset's
        sound_rescale.fill("lots")
        sound_rescale.blur()
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("Sound: rescale must be a finite number in [0, 1], got 'lots'").first.wait_for(timeout=30_000)
        sound_rescale.fill("0.5")
        sound_rescale.blur()
        page.get_by_role("button", name="Generate").click()
        guidance = _settings_file(page)["panels"][1]["guidance"]
    assert (guidance["audio_stg_scale"], guidance["audio_modality_scale"], guidance["audio_rescale"]) == (None, None, 0.5)
    assert (guidance["modality_scale"], guidance["audio_cfg_scale"]) == (3.0, 7.0)


def _wait_for_run(gpu, runs_before: int = 0, timeout: float = 30):
    """Until the GPU runner holds a run (the request got through the queue)."""
    deadline = time.monotonic() + timeout
    while not gpu.CONTROLS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gpu.CONTROLS, "no run started"


def _level(page, *ids) -> list[float]:
    return [page.locator(f"#{i}").bounding_box()["y"] for i in ids]


def test_a_run_shows_its_progress_by_the_buttons_stops_with_a_word_and_errors_leave_no_trace(server, page, runs,
                                                                                              faults, backend):
    from webapp import gpu

    page.goto(server)
    page.get_by_text("Advanced", exact=True).last.click()  # the CFG + STG column's: the videos must stay level anyway
    blocks = page.get_by_label(f"Blocks (this model has {backend.depth}: 0-{backend.depth - 1})")
    blocks.wait_for(state="visible")
    page.get_by_label("Prompt", exact=True).fill("a red fox")
    faults.step_delay = 0.5  # each step half a second slower, as on a slow GPU
    begun = time.monotonic()
    page.get_by_role("button", name="Generate").click()
    _wait_for_run(gpu)

    # Progress: step i of N and the time left, beside the buttons, within the first screen (1360 x 900).
    status = page.locator("#run-status")
    status.get_by_text(re.compile(r"Step \d+ of \d+, about \d+ s left")).wait_for(timeout=30_000)
    box = status.bounding_box()
    assert box["y"] + box["height"] <= 900, box

    stopped_at = time.monotonic()
    page.get_by_role("button", name="Stop").click()
    status.get_by_text(re.compile(r"Stopped after step \d+ of \d+: no video was made")).wait_for(timeout=10_000)
    deadline = time.monotonic() + 30
    while not [r for r in runs if r.started >= begun] and time.monotonic() < deadline:
        time.sleep(0.05)
    record = [r for r in runs if r.started >= begun][-1]
    assert record.status == "stopped" and record.step < record.steps, record
    assert record.released - stopped_at < 2 * 0.5 + 0.5, record
    seed_used = page.get_by_label("Seed used")
    assert seed_used.input_value() == "" and seed_used.get_attribute("placeholder") == "no video yet"
    assert page.evaluate(STATE, "cfg-video") is None  # no video of the stopped run, nor of any before

    faults.step_delay = 0.0
    blocks.fill(str(backend.depth + 5))
    blocks.blur()
    page.get_by_role("button", name="Generate").click()
    # The message stands by the buttons in the page's words, not on the videos nor in a toast that vanishes.
    status.get_by_text(f"Not run. Blocks (this model has {backend.depth}: 0-{backend.depth - 1}) [{backend.depth + 5}] "
                       "out of range").wait_for(timeout=30_000)
    for panel in ("cfg-video", "stg-video", "both-video"):
        assert page.locator(f"#{panel}").get_by_text("Error").count() == 0

    blocks.fill("1")
    blocks.blur()
    page.get_by_label("Negative prompt").fill("")  # a cleared box: no negative prompt, not the preset's
    page.get_by_role("button", name="Generate").click()
    for panel in ("cfg-video", "stg-video"):
        page.wait_for_function(PLAYING, arg=[panel, 0], timeout=120_000)
    assert page.locator("#run-status").get_by_text("Error").count() == 0
    assert _settings_file(page)["negative_prompt"] == ""
    cfg_top, stg_top = _level(page, "cfg-video", "stg-video")
    assert abs(cfg_top - stg_top) < 2, (cfg_top, stg_top)  # level, though only one column's Advanced is open
    page.screenshot(path=str(Path(os.environ.get("STG_PAGE_SHOTS", "/tmp")) / "stg-studio-level.png"), full_page=True)


def test_the_settings_preset_says_custom_and_examples_show_their_settings(server, page, backend):
    page.goto(server)
    recipe = page.get_by_label("Settings preset")
    steps = page.get_by_label("number input for Steps")
    recipe.click()
    page.get_by_role("option", name="Quick preview").click()
    page.wait_for_function("() => document.querySelector('input[aria-label=\"number input for Steps\"]').value == "
                           f"'{backend.preset.scaled(steps=0.25, frames=0)['steps']}'")
    steps.fill("3")
    steps.press("Enter")
    page.wait_for_function("() => document.querySelector('input[aria-label=\"Settings preset\"]').value == 'Custom'")
    cfg_w, stg_w = page.get_by_label("number input for Guidance scale w").all()
    cfg_w.fill("4.5")
    cfg_w.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('input[aria-label=\"number input for Guidance scale w\"]')"
                           "[1].value == '4.5'")  # the CFG + STG panel's w follows the CFG panel's

    # Clicking an example sets every control to what its (cached) videos were made with, the seed too.
    page.get_by_label("Randomize seed").uncheck()
    page.get_by_label("Seed", exact=True).fill("5")
    page.get_by_text("A cat walks on the grass, realistic style.").click()
    for panel in ("cfg-video", "stg-video"):
        page.wait_for_function(PLAYING, arg=[panel, 0], timeout=120_000)
    defaults = backend.preset.defaults
    assert page.get_by_label("Seed", exact=True).input_value() == "0"
    assert steps.input_value() == str(defaults["steps"])
    assert page.get_by_label("number input for Frames", exact=True).input_value() == str(defaults["num_frames"])
    page.wait_for_function("() => document.querySelector('input[aria-label=\"Settings preset\"]').value == "
                           "'Official recipe'")
    settings = _settings_file(page)
    assert (settings["seed"], settings["steps"], settings["num_frames"]) == (0, defaults["steps"],
                                                                             defaults["num_frames"])


def test_a_prompt_longer_than_the_text_encoder_reads_is_pointed_out(server, page, backend):
    long_prompt = max(backend.preset.examples, key=len)
    tokens, limit = backend.prompt_tokens(long_prompt)
    assert tokens > limit  # the example is long enough to show it
    page.goto(server)
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill(long_prompt)
    note = page.locator("#prompt-note")
    note.get_by_text(f"This prompt is {tokens} tokens long, and the model's text encoder reads the first {limit}") \
        .wait_for(timeout=10_000)
    ignored = note.inner_text().split("from “")[1].split("”")[0].removesuffix(" …")
    assert ignored and ignored in long_prompt and not long_prompt.startswith(ignored)
    prompt.fill("a red fox")
    page.wait_for_function("() => document.querySelector('#prompt-note').innerText.trim() === ''")


def _settings_file(page) -> dict:
    link = page.locator("#settings-file a").first
    link.wait_for(timeout=30_000)
    return json.loads(page.request.get(link.get_attribute("href")).text())


def test_cached_examples_belong_to_the_model_that_made_them(page, tmp_path):
    """`python app.py` three times in one folder (Gradio's example cache is ./.gradio/cached_examples): the tiny
    model makes and caches its example; the image-to-video model does not play it, and its example only fills in
    the prompt (the first frame is the user's); the tiny model again plays it from its cache."""
    from conftest import served

    example = "A cat walks on the grass, realistic style."
    env = {"GRADIO_EXAMPLES_CACHE": None}  # Gradio's default folder, in the working directory
    for model, cached in (("tiny", False), ("tiny-i2v", None), ("tiny", True)):
        with served(model, tmp_path, **env) as (url, log):
            page.goto(url)
            page.get_by_text(example).click()
            if cached is None:
                page.wait_for_function("(text) => document.querySelector('textarea').value === text", arg=example)
                page.wait_for_timeout(3000)
                assert page.evaluate(STATE, "stg-video") is None  # no video: not the other model's
            else:
                page.wait_for_function(PLAYING, arg=["stg-video", 0], timeout=120_000)
                settings = _settings_file(page)
                assert (settings["model"], settings["prompt"]) == (model, example)
        assert ("Caching examples at" in log.text) == (cached is False), log.text
    assert [p.name.split("-")[0] for p in (tmp_path / ".gradio" / "cached_examples").iterdir()] == ["tiny"]


def test_block_explorer_plays_its_grid_and_a_row_click_sets_the_blocks(server, page, backend):
    page.goto(server)
    page.get_by_label("Prompt", exact=True).fill("a red fox jumps over a log")
    page.get_by_role("tab", name="Block explorer").click()
    explorer_prompt = page.get_by_label("Prompt to explore")
    explorer_prompt.wait_for()
    page.wait_for_function("() => document.querySelector('#explorer-settings') !== null")
    assert explorer_prompt.input_value() == "a red fox jumps over a log"  # brought over from the Compare tab
    _explore(page, "1, 2")
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
    page.get_by_text("Advanced", exact=True).last.click()  # the CFG + STG column's
    blocks = page.get_by_label(f"Blocks (this model has {backend.depth}: 0-{backend.depth - 1})")
    blocks.wait_for(state="visible")
    assert blocks.input_value() == "2"


def test_stopping_the_explorer_leaves_no_earlier_grid_beside_the_new_settings(server, page, runs, faults):
    from webapp import gpu

    page.goto(server)
    page.get_by_role("tab", name="Block explorer").click()
    page.get_by_label("Prompt to explore").fill("a red fox")
    _explore(page, "1")
    page.locator("#sweep-table").get_by_role("gridcell", name="block 1", exact=True).wait_for()

    faults.step_delay = 0.5
    page.get_by_label("Candidate blocks").fill("2, 3")
    page.get_by_role("button", name="Explore").click()
    _wait_for_run(gpu)
    status = page.locator("#explore-status")
    status.get_by_text(re.compile(r"Step \d+ of \d+")).wait_for(timeout=30_000)
    page.get_by_role("button", name="Stop").click()
    status.get_by_text(re.compile(r"Stopped after step \d+ of \d+: no video was made")).wait_for(timeout=10_000)
    page.wait_for_timeout(1500)  # anything Gradio would put back after the cancel has come by now
    assert page.evaluate(STATE, "grid-video") is None
    assert page.locator("#sweep-table").get_by_role("gridcell", name="block 1", exact=True).count() == 0
    assert page.get_by_label("Seed of this grid").input_value() == ""


def _explore(page, blocks: str) -> None:
    """Explore these blocks in 2 steps, until the grid plays."""
    page.get_by_label("Candidate blocks").fill(blocks)
    steps = page.locator("#explorer-settings").get_by_label("number input for Steps")
    steps.fill("2")
    steps.press("Enter")
    page.get_by_role("button", name="Explore").click()
    page.wait_for_function(PLAYING, arg=["grid-video", 0], timeout=120_000)
