"""Bad input, bursts, a full queue, cancels, out-of-memory, files and memory, against the running app."""

from __future__ import annotations

import gc
import json
import struct
import time
import zlib
from pathlib import Path

import psutil
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from stg.values import MAX_IMAGE_BYTES
from conftest import COMPARE_PARAMETERS, GENERATE_PARAMETERS, SMALL, launched

# A run long enough to act on while it runs: the app's test hook makes each step 0.2 s slower.
LONG = dict(steps=50, num_frames=9, height=32, width=64)
STEP_DELAY = 0.2


@pytest.fixture
def slow_steps(faults):
    faults.step_delay = STEP_DELAY


def _hashes(settings_path) -> list[str]:
    return [p["frames_sha256"] for p in json.loads(Path(settings_path).read_text())["panels"]]


def _png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; pillow reads only the header on open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def _raw_call(url: str, api: str, values: dict, extra: str = "") -> tuple[str, dict]:
    """POST to /gradio_api/call/<api> as curl would, so that NaN (which JSON clients refuse to send) can be
    sent; None stands for every parameter not given (the preset's default)."""
    import httpx

    names = COMPARE_PARAMETERS if api == "compare" else GENERATE_PARAMETERS
    raw = ("NaN", "Infinity", "-Infinity")
    data = ", ".join(values[n] if values.get(n) in raw else json.dumps(values.get(n)) for n in names)
    posted = httpx.post(f"{url}gradio_api/call/{api}", content=f'{{"data": [{data}]{extra}}}',
                        headers={"content-type": "application/json"}, timeout=30)
    posted.raise_for_status()
    event, payload = None, None
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{posted.json()['event_id']}", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = json.loads(line.split(":", 1)[1])
                break
    return event, payload


def _wait_for_step(job, step: int, timeout: float = 60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        progress = job.status().progress_data
        if progress and progress[0].index is not None and progress[0].index >= step and progress[0].length:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach step {step}: {job.status()}")


def _run_record(runs, after: float, timeout: float = 30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        records = [r for r in runs if r.started >= after]
        if records:
            return records[-1]
        time.sleep(0.05)
    raise AssertionError("no run ended")


# -- bad input -------------------------------------------------------------------------------------
# Hostile values of every field, as gradio_client sends them (JSON types), each with the message it must get: the
# field's name and what it allows. Raw requests below send what a JSON client cannot (NaN, infinity).
BAD = [
    (dict(prompt=""), r"prompt must be a text with at least one visible character, got ''"),
    (dict(prompt="   \n "), r"prompt must be a text with at least one visible character"),
    (dict(prompt="\u200b"), r"prompt must be a text with at least one visible character"),
    (dict(prompt="\x00"), r"prompt must not contain control characters, got '\\x00' at position 0"),
    (dict(prompt="a fox\x1b[2J"), r"prompt must not contain control characters, got '\\x1b' at position 5"),
    (dict(prompt="a " * 1500), r"prompt is too long: at most 2000 characters"),
    (dict(prompt=["a fox"]), r"prompt must be a text of at most 2000 characters, got \['a fox'\]"),
    (dict(negative_prompt="x" * 2001), r"negative_prompt is too long: at most 2000 characters, got 2001"),
    (dict(negative_prompt="\x07"), r"negative_prompt must not contain control characters"),
    (dict(negative_prompt=5), r"negative_prompt must be a text of at most 2000 characters, got 5"),
    (dict(stg_mode="stg-x"), r"stg_mode must be one of stg-r, stg-a"),
    (dict(stg_blocks="two"), r"stg_blocks must be block numbers.*0-3"),
    (dict(stg_blocks="1.5"), r"stg_blocks must be block numbers"),
    (dict(stg_blocks="-1"), r"stg_blocks must be block numbers"),
    (dict(stg_blocks="2, 9"), r"stg_blocks \[9\] out of range.*allowed 0-3"),
    (dict(stg_blocks=","), r"stg_blocks must be block numbers separated by commas"),
    (dict(stg_blocks="\u0661"), r"stg_blocks must be block numbers separated by commas"),
    (dict(stg_blocks="\uff12"), r"stg_blocks must be block numbers separated by commas"),
    (dict(stg_blocks="1" * 5000), r"stg_blocks 11111111\.\.\. \(5000 digits\) out of range: this model has 4 blocks"),
    (dict(stg_blocks=True), r"stg_blocks must be block numbers separated by commas.*got True"),
    (dict(stg_scale=-1.0), r"stg_scale must be a finite number in \[0, 10\], got -1.0"),
    (dict(stg_scale=15), r"stg_scale must be a finite number in \[0, 10\], got 15"),
    (dict(cfg_scale=0.5), r"cfg_scale must be a finite number in \[1, 20\], got 0.5"),
    (dict(cfg_scale=50), r"cfg_scale must be a finite number in \[1, 20\], got 50"),
    (dict(stg_cfg_scale=0), r"stg_cfg_scale must be a finite number in \[1, 20\], got 0"),
    (dict(cfg_scale=True), r"cfg_scale must be a finite number in \[1, 20\], got True"),
    (dict(rescale=1.5), r"rescale must be a finite number in \[0, 1\], got 1.5"),
    (dict(cfg_rescale=-0.1), r"cfg_rescale must be a finite number in \[0, 1\]"),
    (dict(steps=0), r"steps must be an integer in \[2, 50\], got 0"),
    (dict(steps=500), r"steps must be an integer in \[2, 50\]"),
    (dict(steps=2.5), r"steps must be an integer in \[2, 50\], got 2.5"),
    (dict(steps="many"), r"steps must be an integer"),
    (dict(steps=[2]), r"steps must be an integer"),
    (dict(num_frames=10), r"num_frames must be of the form 8n\+1 in \[9, 49\]"),
    (dict(num_frames=97), r"num_frames must be of the form 8n\+1 in \[9, 49\]"),
    (dict(height=48), r"height must be a multiple of 32 in \[32, 256\]"),
    (dict(height=32.5), r"height must be a multiple of 32 in \[32, 256\], got 32.5"),
    (dict(width=4096), r"width must be a multiple of 32 in \[32, 256\]"),
    (dict(fps=0), r"fps must be a number in \[1, 60\]"),
    (dict(fps=True), r"fps must be a number in \[1, 60\], got True"),
    (dict(seed=-1), r"seed must be an integer in \[0, 4294967295\]"),
    (dict(seed=2**40), r"seed must be an integer in \[0, 4294967295\]"),
    (dict(seed=True), r"seed must be an integer in \[0, 4294967295\], got True"),
    (dict(seed=2.5), r"seed must be an integer in \[0, 4294967295\], got 2.5"),
    (dict(seed="7"), r"seed must be an integer in \[0, 4294967295\], got '7'"),
    (dict(stg_window_start=0.8, stg_window_end=0.2), r"stg_window_start must be less than stg_window_end"),
    (dict(stg_window_end=1.5), r"stg_window_end must be a finite number in \[0, 1\]"),
]
# Raw JSON values no JSON client sends: each scale's NaN and infinities get the same rule as any value out of range.
RAW = [(name, value) for name in ("cfg_scale", "stg_cfg_scale", "stg_scale", "rescale", "cfg_rescale",
                                  "stg_window_start") for value in ("NaN", "Infinity", "-Infinity")]
RANGES = {"cfg_scale": "[1, 20]", "stg_cfg_scale": "[1, 20]", "stg_scale": "[0, 10]", "rescale": "[0, 1]",
          "cfg_rescale": "[0, 1]", "stg_window_start": "[0, 1]"}


def test_bad_input_is_refused_by_name_and_the_next_request_works(client, runs):
    before = len(runs)
    for bad, message in BAD:
        request = {"prompt": "a red fox", **SMALL, **bad}
        with pytest.raises(AppError, match=message):
            client.predict(**request, api_name="/compare")
    # The same checks on /generate and /sweep, in their own field names.
    with pytest.raises(AppError, match=r"stg_window_start must be less than stg_window_end"):
        client.predict("a fox", stg_window_start=0.5, stg_window_end=0.5, **SMALL, api_name="/generate")
    for blocks, message in ((",", r"candidate_blocks must be block numbers separated by commas"),
                            ("1" * 5000, r"candidate_blocks 11111111\.\.\. \(5000 digits\) out of range")):
        with pytest.raises(AppError, match=message):
            client.predict("a fox", candidate_blocks=blocks, **SMALL, api_name="/sweep")
    assert len(runs) == before  # every one refused before any GPU time
    cfg, *_, seed = client.predict("a red fox", seed=1, **SMALL, api_name="/compare")
    assert Path(cfg).stat().st_size > 0 and seed == 1


def test_nan_and_infinite_numbers_get_the_fields_one_range(server):
    for name, value in RAW:
        for api in ("compare",) if name.startswith("cfg_") else ("compare", "generate"):  # the CFG panel's: /compare
            event, payload = _raw_call(server, api, {"prompt": "a fox", **SMALL, name: value})
            shown = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[value]
            assert event == "error" and payload["error"] == (
                f"{name} must be a finite number in {RANGES[name]}, got {shown}"), payload
    event, payload = _raw_call(server, "compare", {"prompt": "a fox", **SMALL})
    assert event == "complete" and len(payload) == 5


def test_images_on_a_text_only_model_are_refused(client, tmp_path):
    picture = tmp_path / "frame.png"
    Image.new("RGB", (64, 32), (200, 40, 40)).save(picture)
    with pytest.raises(AppError, match=r"image is not accepted: this model makes video from text only"):
        client.predict("a fox", image=handle_file(str(picture)), **SMALL, api_name="/compare")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    with pytest.raises(AppError, match=r"image must be a PNG, JPEG, WebP, BMP or GIF picture"):
        client.predict("a fox", image=handle_file(str(notes)), **SMALL, api_name="/compare")


@pytest.fixture(scope="module")
def i2v_client(app_module, tmp_path_factory):
    """A second app on the tiny image-to-video model."""
    import stg

    backend = stg.Backend.load("tiny-i2v")
    with launched(app_module, app_module.build_demo(backend)) as url:
        yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("i2v-downloads")))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_uploads_are_checked_before_decoding(i2v_client, tmp_path, app_module):
    good = tmp_path / "frame.png"
    Image.new("RGB", (96, 64), (30, 120, 200)).save(good)
    cases = []
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    cases.append((notes, r"image must be a PNG, JPEG, WebP, BMP or GIF picture, got 'notes.txt'"))
    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    cases.append((svg, r"image is not a picture pillow can read"))
    bomb = tmp_path / "bomb.png"  # 100000 x 100000 pixels claimed in a few bytes
    bomb.write_bytes(_png(100_000, 100_000))
    cases.append((bomb, r"image is too large: at most 16.8 megapixels"))
    big = tmp_path / "big.png"  # between pillow's warning and its refusal: the app's own check
    big.write_bytes(_png(5000, 4000))
    cases.append((big, r"image is too large: at most 16.8 megapixels, got 5000x4000"))
    heavy = tmp_path / "heavy.png"  # a valid picture followed by more bytes than allowed
    heavy.write_bytes(good.read_bytes() + bytes(MAX_IMAGE_BYTES))
    cases.append((heavy, r"image is too large: at most 20 MB"))
    for path, message in cases:
        with pytest.raises(AppError, match=message):
            i2v_client.predict("a fox", image=handle_file(str(path)), **SMALL, api_name="/compare")
    with pytest.raises(AppError, match=r"image is required"):
        i2v_client.predict("a fox", **SMALL, api_name="/compare")
    cfg, stg_, both, settings, _ = i2v_client.predict("a fox", image=handle_file(str(good)), **SMALL,
                                                      api_name="/compare")
    assert json.loads(Path(settings).read_text())["pipeline"] == "LTXImageToVideoPipeline"


# -- load ------------------------------------------------------------------------------------------
def test_a_burst_of_six_compares_all_complete(server, tmp_path):
    clients = [Client(server, verbose=False, download_files=str(tmp_path / f"c{i}")) for i in range(6)]
    jobs = [c.submit(f"a red fox number {i}", seed=100 + i, **SMALL, api_name="/compare")
            for i, c in enumerate(clients)]
    for i, job in enumerate(jobs):
        cfg, stg_, both, settings_path, seed = job.result(timeout=120)
        settings = json.loads(Path(settings_path).read_text())
        assert seed == 100 + i and settings["seed"] == 100 + i  # no result mixed up with another's
        assert settings["prompt"] == f"a red fox number {i}"
        assert all(Path(p).stat().st_size > 0 for p in (cfg, stg_, both))


def test_past_the_queue_bound_a_request_is_refused_at_once(app_module, backend, tmp_path, slow_steps):
    with launched(app_module, app_module.build_demo(backend), max_size=1) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        running = client.submit("a fox", **LONG, api_name="/compare")
        _wait_for_step(running, 1)
        waiting = client.submit("a fox", **SMALL, api_name="/compare")
        time.sleep(0.5)
        started = time.monotonic()
        refused = client.submit("a fox", **SMALL, api_name="/compare")
        with pytest.raises(Exception, match=r"Queue is full"):  # "Queue is full! Please try again."
            refused.result(timeout=30)
        assert time.monotonic() - started < 10
        running.cancel()
        cfg, *_ = waiting.result(timeout=120)  # the queued one still completes
        assert Path(cfg).stat().st_size > 0


# -- cancel and out-of-memory ----------------------------------------------------------------------
def test_a_client_cancel_stops_within_a_step_and_leaves_the_model_unchanged(client, runs, slow_steps):
    reference = _hashes(client.predict("a red fox", seed=123, **SMALL, api_name="/compare")[3])
    begun = time.monotonic()
    job = client.submit("a slow fox", **LONG, api_name="/compare")
    _wait_for_step(job, 2)
    cancelled_at = time.monotonic()
    assert job.cancel()
    record = _run_record(runs, begun)
    assert record.status == "stopped" and record.step < LONG["steps"]
    step_time = max(STEP_DELAY, (record.at - record.started) / record.step)
    assert record.released - cancelled_at < 2 * step_time + 0.5, (record, step_time)

    again = _hashes(client.predict("a red fox", seed=123, **SMALL, api_name="/compare")[3])
    assert again == reference  # bit-identical frames: the cancel left the model as it was


def test_a_sweep_is_cancelled_like_a_comparison_and_counts_steps_over_all_runs(client, runs, slow_steps):
    begun = time.monotonic()
    # 5 panels in runs of 4: two runs, so the progress counts to twice the steps.
    job = client.submit("a slow fox", candidate_blocks="0, 1, 2, 3", **{**SMALL, "steps": 10}, api_name="/sweep")
    _wait_for_step(job, 2)
    assert job.status().progress_data[0].length == 20
    cancelled_at = time.monotonic()
    assert job.cancel()
    record = _run_record(runs, begun)
    assert record.status == "stopped" and record.step < 20 and record.steps == 20, record
    assert record.released - cancelled_at < 2 * STEP_DELAY + 0.5, record
    _, table, *_ = client.predict("a fox", candidate_blocks="1", **SMALL, api_name="/sweep")
    assert len(table["data"]) == 2


def test_one_client_cancelling_queued_jobs_leaves_its_other_jobs_running(server, runs, tmp_path, slow_steps):
    """Gradio cancels by session and function: one client cancelling two of its queued jobs used to kill its running
    one too, which then never completed. Every job not cancelled completes, and the cancelled ones never run."""
    from gradio_client.utils import Status

    client = Client(server, verbose=False, download_files=str(tmp_path))
    begun = time.monotonic()
    jobs = [client.submit(f"a red fox number {i}", seed=i, **SMALL, api_name="/compare") for i in range(8)]
    running = next(job for job in _until(lambda: [j for j in jobs if j.status().code == Status.PROGRESS]))
    _wait_for_step(running, 1)
    queued = [job for job in jobs if job.status().code == Status.IN_QUEUE][-2:]
    assert len(queued) == 2 and running not in queued
    for job in queued:
        assert job.cancel()
    for i, job in enumerate(jobs):
        if job not in queued:
            *_, settings_path, seed = job.result(timeout=120)
            assert seed == i and json.loads(Path(settings_path).read_text())["prompt"] == f"a red fox number {i}"
    assert [job.status().code for job in queued] == [Status.CANCELLED] * 2
    ended = [r for r in runs if r.started >= begun]
    assert len(ended) == 6 and {r.status for r in ended} == {"done"}, ended


def _until(find, timeout: float = 60):
    """find()'s first non-empty answer, asked until it comes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = find()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_out_of_memory_is_reported_and_the_app_keeps_serving(client, runs, faults):
    reference = _hashes(client.predict("a red fox", seed=9, **SMALL, api_name="/compare")[3])
    faults.oom_at_step = 1  # a real torch.OutOfMemoryError, raised inside the run
    with pytest.raises(AppError, match=r"Out of GPU memory at 9 frames of 64x32: lower num_frames"):
        client.predict("a red fox", seed=9, **SMALL, api_name="/compare")
    assert runs[-1].status == "out of memory"
    assert _hashes(client.predict("a red fox", seed=9, **SMALL, api_name="/compare")[3]) == reference


# -- files and memory ------------------------------------------------------------------------------
def test_thirty_requests_keep_files_and_memory_bounded(app_module, backend, tmp_path):
    import gradio as gr

    output_dir = Path(gr.utils.get_upload_folder()) / f"soak-{time.time_ns()}"
    frequency, age = 1, 2
    demo = app_module.build_demo(backend, delete_cache=(frequency, age), output_dir=output_dir)
    process = psutil.Process()
    with launched(app_module, demo) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        for _ in range(3):  # warm-up: first-use allocations are not growth
            client.predict("a red fox", **SMALL, api_name="/compare")
        gc.collect()
        before = process.memory_info().rss
        most = 0
        for i in range(30):
            client.predict("a red fox", seed=i, **SMALL, api_name="/compare")
            most = max(most, len(list(output_dir.iterdir())))
        gc.collect()
        grown = process.memory_info().rss - before
        assert grown < 300 * 1024**2, f"resident memory grew {grown / 1024**2:.0f} MB over 30 requests"
        # 4 files a request; without deletion there would be 120.
        assert most < 60, most
        time.sleep(age + 2 * frequency + 1)
        left = list(output_dir.iterdir())
        assert left == [], left
    names = set()
    for path in tmp_path.rglob("*.mp4"):
        assert path.name not in names  # no fixed output names
        names.add(path.name)


def test_cache_cleaning_survives_a_request_finishing_meanwhile(app_module, tmp_path, monkeypatch):
    """Gradio deletes old files in a worker thread while requests add theirs to the same sets; one added during
    the deletion must neither end the cleaning nor be lost."""
    import os
    from types import SimpleNamespace

    from gradio import route_utils

    old, new = tmp_path / "old.mp4", tmp_path / "new.mp4"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    live = {str(old)}
    remove = os.remove

    def remove_while_a_request_finishes(path):
        live.add(str(new))
        remove(path)

    monkeypatch.setattr(os, "remove", remove_while_a_request_finishes)
    route_utils.delete_files_created_by_app(SimpleNamespace(blocks={}, temp_file_sets=[live]), age=None)
    assert live == {str(new)} and not old.exists() and new.exists()


def test_the_model_comes_only_from_the_command_line_or_environment(client, app_module, backend):
    import inspect

    from webapp.handlers import Studio

    for handler in (Studio.compare, Studio.generate, Studio.sweep):
        assert not any("model" in name for name in inspect.signature(handler).parameters)
    app_files = [Path(app_module.__file__), *(Path(app_module.__file__).parent / "webapp").rglob("*.py")]
    assert not any("trust_remote_code" in p.read_text() for p in app_files)
    engine = Path(app_module.stg.__file__).parent
    assert not any("trust_remote_code=True" in p.read_text() for p in engine.rglob("*.py"))
    *_, settings_path, _ = client.predict("a fox", **SMALL, api_name="/compare")
    assert json.loads(Path(settings_path).read_text())["model"] == "tiny" and backend.model == "tiny"
    # A raw request with a model field of its own: ignored.
    event, payload = _raw_call(client.src, "compare", {"prompt": "a fox", **SMALL}, extra=', "model": "ltx-video"')
    assert event == "complete" and backend.model == "tiny" and app_module.BACKEND is backend
    assert app_module.parse_args(["--model", "ltx-video", "--unknown", "x"]).model == "ltx-video"
