"""Fixtures that start the app (the offline tiny model, served on 127.0.0.1 on a free port) and watch its GPU runs:
a log of how each ended, and faults injected into them; app.py started as a process, as a user starts it; and a
page in Debian's Chromium, driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

# Before gradio is imported anywhere: the app loads the tiny model, keeps its files in a folder of
# this run's own, and sends nothing anywhere.
os.environ["STG_MODEL"] = "tiny"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
_GRADIO_TMP = tempfile.mkdtemp(prefix="stg-studio-tests-")
os.environ["GRADIO_TEMP_DIR"] = _GRADIO_TMP
os.environ["GRADIO_EXAMPLES_CACHE"] = os.path.join(_GRADIO_TMP, "examples")

# Small requests keep the whole suite to a few minutes on 2 cores.
SMALL = dict(steps=2, num_frames=9, height=32, width=64)
# The HTTP API's parameters, in order: /compare's; /generate has no CFG panel; /sweep tries candidate blocks.
COMPARE_PARAMETERS = [
    "prompt", "negative_prompt", "image", "seed", "steps", "num_frames", "height", "width", "cache", "fps",
    "cfg_scale", "cfg_rescale",
    "stg_cfg_scale", "stg_scale", "stg_mode", "stg_blocks", "rescale", "temporal_stg_scale", "temporal_stg_blocks",
    "stg_window_start", "stg_window_end",
    "cfg_scale_2", "modality_scale", "audio_cfg_scale", "audio_stg_scale", "audio_modality_scale", "audio_rescale",
    "min_guidance_scale", "motion_bucket_id", "noise_aug_strength", "decode_chunk_size",
]
GENERATE_PARAMETERS = [n for n in COMPARE_PARAMETERS if n not in ("cfg_scale", "cfg_rescale")]
# A sweep names its candidate blocks, and on a model with factorized attention which kind of layer they are.
SWEEP_PARAMETERS = [{"stg_blocks": "candidate_blocks", "temporal_stg_blocks": "sweep_layers"}.get(n, n)
                    for n in COMPARE_PARAMETERS]


ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_GRADIO_TMP, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_module():
    """app.py, imported once: it loads stg.Backend.load("tiny") at import and builds `demo` around it."""
    import app

    assert app.BACKEND.model == "tiny"
    return app


@pytest.fixture(scope="session")
def backend(app_module):
    return app_module.BACKEND


@contextmanager
def launched(app_module, demo, **serve_kwargs):
    """Serve a demo on a free local port (in this process) and yield its URL; close it afterwards."""
    _, url, _ = app_module.serve(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                                 quiet=True, **serve_kwargs)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="session")
def server(app_module):
    """URL of app.demo, exactly what `python app.py --model tiny` serves."""
    with launched(app_module, app_module.demo) as url:
        yield url


@pytest.fixture
def client(server, tmp_path):
    from gradio_client import Client

    return Client(server, verbose=False, download_files=str(tmp_path / "downloads"))


# -- app.py as a process ---------------------------------------------------------------------------
def app_process(*args, cwd, **env) -> subprocess.Popen:
    """`python app.py ARGS` in cwd, offline, its output (stdout and stderr) in one pipe; env=None removes a variable."""
    environment = {**os.environ, "STG_MODEL": "", "HF_HUB_OFFLINE": "1", **env}
    environment = {name: value for name, value in environment.items() if value is not None}
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args], cwd=cwd, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@contextmanager
def served(model: str, cwd, **env):
    """`python app.py --model MODEL` serving on a free port in cwd: yields its URL and its log, whose `text` is all
    of it once the app has ended (on leaving)."""
    port = free_port()
    process = app_process("--model", model, "--port", str(port), cwd=cwd, **env)
    log = SimpleNamespace(text="")
    try:
        for line in process.stdout:  # up to the line that says where it listens
            log.text += line
            if "Running on local URL" in line:
                break
        assert process.poll() is None, log.text
        yield f"http://127.0.0.1:{port}/", log
    finally:
        process.terminate()
        log.text += process.communicate(timeout=60)[0]


# -- the app's GPU runs ----------------------------------------------------------------------------
def _hooked(hook):
    """Install a run hook in the app's GPU runner for the duration."""
    from webapp import gpu

    gpu.HOOKS.append(hook)
    try:
        yield hook
    finally:
        gpu.HOOKS.remove(hook)


@pytest.fixture(scope="session")
def runs(app_module):
    """How the app's GPU runs ended (webapp.gpu.RunRecord), newest last."""
    from webapp.gpu import RunHook

    class RunLog(RunHook, list):
        def ended(self, record):
            self.append(record)

    yield from _hooked(RunLog())


@pytest.fixture
def faults(app_module):
    """Faults in the app's GPU runs: `step_delay` seconds more per step, as on a slow GPU; a real
    torch.OutOfMemoryError after step `oom_at_step` of the next run (once)."""
    from webapp.gpu import RunHook

    class Faults(RunHook):
        step_delay = 0.0
        oom_at_step = None

        def step(self, step, total):
            import torch

            time.sleep(self.step_delay)
            if self.oom_at_step == step:
                self.oom_at_step = None
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected fault)")

    yield from _hooked(Faults())


CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

PLAYING = """([id, since]) => {
    const v = document.querySelector(`#${id} video`);
    return v !== null && v.readyState >= 2 && v.videoWidth > 0 && v.currentTime > since;
}"""


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), "Chromium is installed by .ci/run (apt-get install chromium)"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1360, "height": 900}, device_scale_factor=1)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
