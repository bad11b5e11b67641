"""How long an offline model (shapes or lab) keeps a person waiting: `python -m stg.shapes.bench [--model lab]`.

Medians over `--repeats`: loading the model, one comparison at the preset's defaults (denoising and decoding, then
the figures and the files the app writes), and `python app.py --model MODEL` from its start to its first page.
Prints a table, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

from .. import Backend, results
from ..inputs import COMMANDS, task
from ..presets import ROOT

PROMPTS = {"shapes": "a red circle moving right on a blue background",
           "lab": "two small red squares bouncing quickly on a striped grey background"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_start(model: str, timeout: float = 300) -> float:
    """Seconds from `python app.py --model MODEL` to its page answering."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py", "--model", model, "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < timeout:
            if server.poll() is not None:
                raise RuntimeError(f"app.py exited with status {server.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"app.py did not answer within {timeout:.0f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(repeats: int, model: str = "shapes") -> dict:
    loads = []
    for _ in range(repeats):
        started = time.perf_counter()
        backend = Backend.load(model)
        loads.append(time.perf_counter() - started)
    backend.pipe.set_progress_bar_config(disable=True)
    checked = task(backend, COMMANDS["compare"], {"prompt": PROMPTS[model]})
    renders, composes = [], []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats + 1):  # the first is a warm-up
            started = time.perf_counter()
            videos = backend.render(checked.request)
            rendered = time.perf_counter()
            results.write(results.compose(checked, videos), results.in_folder(Path(folder)))
            renders.append(rendered - started)
            composes.append(time.perf_counter() - rendered)
    starts = [app_start(model) for _ in range(repeats)]
    d = backend.preset.defaults
    return {
        "model": model, "prompt": PROMPTS[model], "steps": d["steps"], "num_frames": d["num_frames"],
        "height": d["height"], "width": d["width"], "repeats": repeats, "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "seconds": {"load": statistics.median(loads), "compare_render": statistics.median(renders[1:]),
                    "compare_figures_and_files": statistics.median(composes[1:]),
                    "compare_total": statistics.median(r + c for r, c in zip(renders[1:], composes[1:])),
                    "app_start": statistics.median(starts)},
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m stg.shapes.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=sorted(PROMPTS), default="shapes")
    args = parser.parse_args(argv)
    result = measure(args.repeats, args.model)
    print(f"{result['model']} model, {result['steps']} steps, {result['num_frames']} frames of {result['width']}x"
          f"{result['height']}, {result['cpu_count']} CPUs, {result['torch_threads']} torch threads; "
          f"medians of {result['repeats']}")
    for name, seconds in result["seconds"].items():
        print(f"{name:<28}{seconds:>8.2f} s")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
