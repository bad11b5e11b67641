"""What the page does with what a person types, in Debian's Chromium: a value out of range is refused by the same rule
as over HTTP and on the command line, in the page's words, under the field and beside the buttons, never changed into
an allowed one; a typed seed is the seed used; the page says what to look for on the loaded model; and it fits a
phone."""

from __future__ import annotations

import re

from conftest import PLAYING
from playwright.sync_api import expect
from test_browser import _settings_file

MAX_SEED = 4294967295


def _refused(page, runs, message: str) -> None:
    """Generate; the run does not start, and the message stands beside the buttons and under the field."""
    before = len(runs)
    page.get_by_role("button", name="Generate").click()
    status = page.locator("#run-status")
    status.get_by_text(f"Not run. {message}", exact=True).wait_for(timeout=30_000)
    page.get_by_text(message, exact=True).first.wait_for(timeout=10_000)  # the field's own message
    assert page.get_by_text(message).count() >= 2, message
    assert page.locator(".toast-body").count() == 0 and status.get_by_text("Error").count() == 0
    assert len(runs) == before  # refused before the queue: no GPU time


def test_numbers_typed_out_of_range_are_refused_by_name_not_clamped(server, page, runs, backend):
    page.goto(server)
    page.get_by_label("Prompt", exact=True).fill("a red fox")
    steps_low, steps_high = backend.preset.bounds("steps")[:2]
    stg_scale = page.get_by_label("number input for STG scale s")
    cfg_w = page.get_by_label("number input for Guidance scale w").first
    steps = page.get_by_label("number input for Steps")
    cases = [
        (stg_scale, "50", "STG scale s must be a finite number in [0, 10], got 50", "1"),
        (stg_scale, "-3", "STG scale s must be a finite number in [0, 10], got -3", "1"),
        (cfg_w, "0", "Guidance scale w (CFG panel) must be a finite number in [1, 20], got 0", "3"),
        (steps, "1000", f"Steps must be an integer in [{steps_low}, {steps_high}], got 1000", "2"),
    ]
    for box, typed, message, good in cases:
        box.fill(typed)
        box.blur()
        _refused(page, runs, message)
        assert box.input_value() == typed  # what was typed stays, to be corrected
        box.fill(good)
        box.blur()
    seed = page.get_by_label("Seed", exact=True)
    for typed, message in (("1.5", "got 1.5"), ("-4", "got -4"), (str(MAX_SEED + 1), f"got {MAX_SEED + 1}")):
        seed.fill(typed)
        expect(page.get_by_label("Randomize seed")).not_to_be_checked()  # typing a seed means using it
        _refused(page, runs, f"Seed must be an integer in [0, {MAX_SEED}], {message}")
        assert seed.input_value() == typed  # not rounded, not replaced by a random seed
    seed.fill("7")
    page.get_by_role("button", name="Generate").click()
    for panel in ("cfg-video", "stg-video"):
        page.wait_for_function(PLAYING, arg=[panel, 0], timeout=120_000)
    assert page.locator("#run-status").inner_text().strip() == ""  # the last refusal is gone
    settings = _settings_file(page)
    assert (settings["seed"], settings["steps"]) == (7, 2)
    assert [p["guidance"]["stg_scale"] for p in settings["panels"]] == [0.0, 1.0]


def test_bad_blocks_are_named_by_the_pages_label(server, page, runs, backend):
    page.goto(server)
    page.get_by_label("Prompt", exact=True).fill("a red fox")
    for advanced in page.get_by_text("Advanced", exact=True).all():  # every panel's, the CFG + STG one among them
        advanced.click()
    label = f"Blocks (this model has {backend.depth}: 0-{backend.depth - 1})"
    blocks = page.get_by_label(label)
    blocks.wait_for(state="visible")
    page.wait_for_timeout(500)  # the accordion's content settles after it opens
    for typed, problem in (
            (str(backend.depth + 5), f"[{backend.depth + 5}] out of range"),
            ("1,,2", "must be block numbers separated by commas"),
            ("two", "must be block numbers separated by commas")):
        blocks.fill(typed)
        blocks.blur()
        page.get_by_role("button", name="Generate").click()
        status = page.locator("#run-status")
        status.get_by_text(re.compile(rf"^Not run\. {re.escape(label)} {re.escape(problem)}")).wait_for(timeout=30_000)
        assert "stg_blocks" not in page.locator("body").inner_text()  # the API's name is not the page's
    assert "an item between commas is empty" not in status.inner_text()  # "two" has no empty item
    blocks.fill("1,,2")
    blocks.blur()
    page.get_by_role("button", name="Generate").click()
    status.get_by_text("got '1,,2': an item between commas is empty").wait_for(timeout=30_000)


def test_seed_boxes_show_their_placeholder_until_a_run(server, page):
    page.goto(server)
    seed_used = page.get_by_label("Seed used")
    seed_used.wait_for()
    page.wait_for_function("() => document.querySelector('input[aria-label=\"Seed used\"]').value === ''")
    assert seed_used.get_attribute("placeholder") == "no video yet"
    page.get_by_role("tab", name="Block explorer").click()
    grid_seed = page.get_by_label("Seed of this grid")
    grid_seed.wait_for()
    assert grid_seed.input_value() == "" and grid_seed.get_attribute("placeholder") == "no video yet"


def test_a_typed_seed_is_the_seed_used(server, page):
    page.goto(server)
    page.get_by_label("Prompt", exact=True).fill("a red fox")
    randomize = page.get_by_label("Randomize seed")
    assert randomize.is_checked()  # a random seed unless one is typed
    page.get_by_label("Seed", exact=True).fill("42")
    expect(randomize).not_to_be_checked()
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function(PLAYING, arg=["stg-video", 0], timeout=120_000)
    assert page.get_by_label("Seed used").input_value() == "42"
    assert _settings_file(page)["seed"] == 42


def test_the_header_says_what_to_look_for_on_the_loaded_model(server, page, backend):
    page.goto(server)
    header = page.locator("#header")
    header.get_by_text("What to look for on this model").wait_for()
    text = " ".join(header.inner_text().split())
    assert backend.preset.look_for and backend.preset.look_for in text  # the preset's words, not a claim
    assert "improves" not in text


def test_the_seed_row_fits_a_phone(server, page):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server)
    label = page.get_by_text("Randomize seed", exact=True)
    label.wait_for()
    fits = page.evaluate("""() => {
        const text = [...document.querySelectorAll('label span')].find(s => s.textContent.trim() === 'Randomize seed');
        const box = text.closest('.block') || text.parentElement;
        const t = text.getBoundingClientRect(), b = box.getBoundingClientRect();
        return {text: [t.left, t.right], box: [b.left, b.right], page: document.documentElement.clientWidth,
                overflow: text.scrollWidth > text.clientWidth + 1};
    }""")
    assert fits["text"][1] <= fits["box"][1] + 0.5 and fits["text"][1] <= fits["page"], fits
    assert not fits["overflow"], fits


def test_values_of_the_wrong_type_say_what_was_sent(client):
    """Over HTTP, where a client can send any JSON type: '4' for a number is text, 123 for a text is a number."""
    import pytest
    from gradio_client.exceptions import AppError

    from conftest import SMALL

    for bad, message in ((dict(cfg_scale="4"), "cfg_scale must be a finite number in [1, 20], got '4' (text)"),
                         (dict(prompt=123), "prompt must be a text of at most 2000 characters, got 123 (a number)"),
                         (dict(stg_scale=[1]), "stg_scale must be a finite number in [0, 10], got [1] (a list)"),
                         (dict(seed="7"), "seed must be an integer in [0, 4294967295], got '7' (text)")):
        with pytest.raises(AppError, match=re.escape(message)):
            client.predict(**{"prompt": "a red fox", **SMALL, **bad}, api_name="/compare")
