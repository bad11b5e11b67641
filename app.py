"""STG Studio: one prompt and seed, a CFG video beside a CFG + STG video, in the browser and over HTTP.

    python app.py                  # LTX-Video 2B from the hub on a GPU (falls back to the offline tiny model)
    python app.py --model tiny     # offline, CPU, random weights
    STG_MODEL=KEY|ID|PATH python app.py

The page and the API (`/compare`, `/generate`, `/sweep`) only wire Gradio components to `stg.Backend`.
"""

from __future__ import annotations

try:  # Imported before torch: on a ZeroGPU Space it patches CUDA start-up.
    import spaces
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    spaces = None

import argparse
import asyncio
import json
import math
import os
import random
import re
import sys
import tempfile
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio.from_thread
import gradio as gr
import torch
from gradio.context import LocalContext
from PIL import Image, ImageOps, UnidentifiedImageError

import stg
from stg import results
from stg import video as stg_video
from stg.backend import MAX_PROMPT_CHARS, MAX_SEED

DEFAULT_MODEL = "ltx-video"
QUEUE_SIZE = 16  # requests waiting for the GPU; past it a request is refused at once ("Queue is full")
MAX_IMAGE_BYTES = 20 * 1024**2
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
UPLOAD_LIMIT = "40mb"  # hard stop at the upload route; images are refused above MAX_IMAGE_BYTES with a message
FPS_RANGE = (1, 60)
DELETE_CACHE = (600, 3600)  # every 10 minutes, delete result and upload files older than an hour
MAX_GPU_SECONDS = 240
PAPER = "https://arxiv.org/abs/2411.18664"
MAX_CANDIDATES = 16  # blocks one sweep may try
PANELS_PER_RUN = 4  # panels denoised together in one batched run of a sweep
TABLE_COLUMNS = ["block", "label", "motion", "flicker", "sharpness"]  # results.sweep_table's rows, in order
SAME_MOTION = 5  # percent: closer motion figures than this count as the same under the videos

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # pillow refuses to decode past twice this; load_image refuses past it
ON_ZERO_GPU = bool(spaces is not None and spaces.config.Config.zero_gpu)
gpu = spaces.GPU if spaces is not None else (lambda **_: (lambda fn: fn))

# Test-only fault injection, set from the test process: {"oom_at_step": k} raises a real
# torch.OutOfMemoryError after denoising step k of the next run (once); {"step_delay": seconds}
# makes every step that much slower, as on a slow GPU.
FAULTS: dict = {}


# -- model -----------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="STG Studio", allow_abbrev=False)
    parser.add_argument("--model", default=None, help="preset key (ltx-video, tiny, ...), hub id or local folder; "
                        "default: $STG_MODEL, else ltx-video")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--share", action="store_true", help="create a public share link")
    parser.add_argument("--offload", action="store_true", help="CPU offload of idle components (less GPU memory)")
    args, _ = parser.parse_known_args(argv)  # a Space or a test runner may add arguments of its own
    return args


def load_backend(model: str | None = None, offload: bool = False) -> tuple[stg.Backend, str]:
    """The one backend, and why the tiny model stands in for the default one ("" if it does not)."""
    device = "cuda" if ON_ZERO_GPU else None  # ZeroGPU: weights go to cuda at import, the GPU comes per call
    if model:
        return stg.Backend.load(model, device=device, offload=offload), ""
    if not (ON_ZERO_GPU or torch.cuda.is_available()):
        reason = f"no GPU found, so {DEFAULT_MODEL} is not loaded"
    else:
        try:
            return stg.Backend.load(DEFAULT_MODEL, device=device, offload=offload), ""
        except Exception as error:  # hub unreachable, not enough memory, ...
            reason = f"{DEFAULT_MODEL} could not be loaded ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
    print(f"STG Studio: {reason}; using the offline tiny model (random weights, noise-like videos).", flush=True)
    return stg.Backend.load("tiny"), reason


# -- one run on the GPU ----------------------------------------------------------------------------
class Stopped(Exception):
    """Raised from the step callback when the request was stopped or cancelled."""


@dataclass
class RunControl:
    session: str | None
    task: object = None  # the asyncio task serving the request; done() once Gradio cancels it
    stop: threading.Event = field(default_factory=threading.Event)
    progress: object = None

    def stopped(self) -> bool:
        return self.stop.is_set() or (self.task is not None and self.task.done())


_BACKENDS: dict[int, stg.Backend] = {}
_CONTROLS: dict[str, RunControl] = {}
_GPU_LOCK = threading.Lock()  # a cancelled run leaves Gradio's slot at once but the GPU only after its step
RUNS: list[dict] = []  # how recent runs ended, newest last (kept short)


def sweep_panels(reference: stg.Guidance, candidate: stg.Guidance, blocks) -> list[stg.Guidance]:
    """The panels of a sweep, as `Backend.sweep` makes them: the reference, then candidate with each block alone."""
    return [reference] + [replace(candidate, stg_blocks=(block,)) for block in blocks]


def _panels(job: dict) -> list[stg.Guidance]:
    """Every panel a job denoises."""
    return sweep_panels(*job["guidances"], job["blocks"]) if job["kind"] == "sweep" else list(job["guidances"])


def _run_job(backend: stg.Backend, job: dict, callback) -> list:
    return backend.run(job["prompt"], job["guidances"], callback=callback, **job["options"])


def _sweep_job(backend: stg.Backend, job: dict, callback) -> list:
    reference, candidate = job["guidances"]
    first, others = backend.sweep(job["prompt"], reference, candidate, job["blocks"], callback=callback,
                                  panels_per_run=job["panels_per_run"], **job["options"])
    return [first, *others]


JOBS = {"run": _run_job, "sweep": _sweep_job}  # a job's kind: how run_on_gpu calls the backend


def _work(job: dict) -> float:
    """Transformer passes x steps x frames x pixels: what the run's GPU time grows with."""
    options = job["options"]
    backend = _BACKENDS[job["backend"]]
    sizes = [options.get(k) or backend.preset.defaults[k] for k in ("steps", "num_frames", "height", "width")]
    passes = sum(1 + (1.0 if g.cfg_scale != 1 else 0) + (0.5 if g.uses_stg else 0) for g in _panels(job))
    return math.prod(sizes) * passes


def gpu_duration(job: dict) -> int:
    """ZeroGPU seconds to reserve: about 60 s for the official 40 x 121 x 512 x 768 comparison on an H200."""
    return int(min(MAX_GPU_SECONDS, 20 + 6e-9 * _work(job)))


@gpu(duration=gpu_duration)
def run_on_gpu(job: dict) -> list:
    """Denoise one request (picklable in and out, as ZeroGPU needs); only gr.Error leaves it.

    job["kind"] names the work (a key of JOBS); the videos come back in panel order."""
    backend = _BACKENDS[job["backend"]]
    control = _CONTROLS.get(job["token"]) or RunControl(None)
    outcome = {"token": job["token"], "status": "done", "step": 0, "steps": 0}

    def on_step(step: int, total: int) -> None:
        outcome.update(step=step, steps=total, at=time.monotonic())
        if FAULTS.get("step_delay"):
            time.sleep(FAULTS["step_delay"])
        if FAULTS.get("oom_at_step") == step:
            FAULTS.pop("oom_at_step")
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected fault)")
        if control.stopped():
            raise Stopped()
        if control.progress is not None and not ON_ZERO_GPU:
            left = (time.monotonic() - started) / step * (total - step)
            control.progress((step, total), desc=f"Step {step} of {total}, about {left:.0f} s left", unit="steps")

    with _GPU_LOCK:
        started = outcome["started"] = time.monotonic()
        try:
            if control.stopped():
                raise Stopped()
            return JOBS[job["kind"]](backend, job, on_step)
        except Stopped:
            outcome["status"] = "stopped"
            raise gr.Error("Stopped.", print_exception=False) from None
        except ValueError as error:
            outcome["status"] = "refused"
            raise gr.Error(str(error), print_exception=False) from None
        except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError
            if not isinstance(error, torch.OutOfMemoryError) and "out of memory" not in str(error).lower():
                outcome["status"] = "failed"
                raise
            outcome["status"] = "out of memory"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            options = job["options"]
            raise gr.Error(
                f"Out of GPU memory at {options.get('num_frames')} frames of {options.get('width')}x"
                f"{options.get('height')}: lower num_frames first, then height and width, and try again.",
                print_exception=False) from None
        finally:
            outcome["seconds"] = time.monotonic() - started
            outcome["released"] = time.monotonic()
            RUNS.append(outcome)
            del RUNS[:-50]


# -- request parsing -------------------------------------------------------------------------------
def parse_blocks(text, depth: int, default, name: str = "stg_blocks") -> list[int]:
    """'14, 19' -> [14, 19]; empty or None -> default (the preset's blocks, or a sweep's candidates)."""
    if text is None or not str(text).strip():
        return list(default)
    parts = [p.strip() for p in re.split(r"[,\s]+", str(text).strip()) if p.strip()]
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        examples = (f"'{default[0]}' or '{max(default[0] - 5, 0)}, {default[0]}'" if len(default) == 1
                    else f"'{', '.join(map(str, default[:3]))}'")
        raise gr.Error(f"{name} must be block numbers separated by commas, such as {examples} "
                       f"(this model has {depth} blocks: 0-{depth - 1}), got {str(text)[:60]!r}", print_exception=False)
    return [int(p) for p in parts]


def blocks_text(blocks) -> str:
    return ", ".join(map(str, blocks))


@contextmanager
def _named(names: dict[str, str]):
    """The engine's ValueError as gr.Error, with the panel's field names as the API spells them."""
    try:
        yield
    except ValueError as error:
        message = str(error)
        for old in sorted(names, key=len, reverse=True):
            message = re.sub(rf"(?<!\w){re.escape(old)}(?!\w)", names[old], message)
        raise gr.Error(message, print_exception=False) from None


LEFT_NAMES = {"rescale": "cfg_rescale"}
RIGHT_NAMES = {"cfg_scale": "stg_cfg_scale", "window start": "stg_window_start", "window end": "stg_window_end",
               "window": "stg_window_start, stg_window_end"}
SWEEP_NAMES = {**RIGHT_NAMES, "stg_blocks": "candidate_blocks"}


def load_image(path, image_to_video: bool) -> Image.Image | None:
    """Decode an upload with pillow only, after checking its bytes and pixels; RGB out."""
    if path is None:
        return None
    if not image_to_video:
        raise gr.Error("image is not accepted: this model makes video from text only; leave image empty",
                       print_exception=False)
    try:
        size = os.path.getsize(path)
    except (OSError, TypeError):
        raise gr.Error("image could not be read: upload a PNG, JPEG, WebP, BMP or GIF file", print_exception=False) from None
    if size > MAX_IMAGE_BYTES:
        raise gr.Error(f"image is too large: at most {MAX_IMAGE_BYTES // 1024**2} MB, got {size / 1024**2:.1f} MB",
                       print_exception=False)
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise gr.Error(f"image is too large: at most {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels, got {width}x{height}",
                               print_exception=False)
            return ImageOps.exif_transpose(image).convert("RGB")
    except gr.Error:
        raise
    except Image.DecompressionBombError:
        raise gr.Error(f"image is too large: at most {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels", print_exception=False) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise gr.Error("image is not a picture pillow can read: upload a PNG, JPEG, WebP, BMP or GIF file",
                       print_exception=False) from None


def _guard(component, name: str, allowed: str):
    """Gradio's own input checks raise without the field's name; say which field and what it allows.
    None passes through unchanged and means the preset's default."""
    inner = component.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        try:
            return inner(payload)
        except Image.DecompressionBombError:
            raise gr.Error(f"{name} is too large: at most {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels",
                           print_exception=False) from None
        except Exception:
            shown = getattr(payload, "orig_name", None) or payload
            shown = shown if isinstance(shown, (int, float)) else str(shown)[:60]
            raise gr.Error(f"{name} must be {allowed}, got {shown!r}", print_exception=False) from None

    component.preprocess = preprocess
    return component


# -- the app ---------------------------------------------------------------------------------------
class Studio:
    """Request handlers around one backend; the Gradio functions are its methods."""

    def __init__(self, backend: stg.Backend, output_dir: str | os.PathLike | None = None):
        self.backend = backend
        self.defaults = backend.preset.defaults
        self.output_dir = Path(output_dir or Path(gr.utils.get_upload_folder()) / "stg-studio")
        self.explorer_defaults = _reduced(backend, steps=0.5, frames=0.5)  # a sweep's size when none is given
        _BACKENDS[id(backend)] = backend

    # Parameter names below are the API's; every one but prompt may be None, meaning the preset's default.
    def compare(self, prompt, negative_prompt=None, image=None, seed=0, steps=None, num_frames=None, height=None,
                width=None, fps=None, cfg_scale=None, cfg_rescale=None, stg_cfg_scale=None, stg_scale=None,
                stg_mode=None, stg_blocks=None, rescale=None, stg_window_start=None, stg_window_end=None,
                progress=gr.Progress(track_tqdm=ON_ZERO_GPU), request: gr.Request = None):
        """Make the same prompt and seed twice, with CFG and with CFG + STG, in one run.

        Args:
            prompt: what the video shows (at most 2000 characters)
            negative_prompt: what it should not show; None: the preset's
            image: first frame, for image-to-video models only
            seed: 0 to 4294967295; None: a random seed (the one used is returned)
            steps: denoising steps; None: the preset's
            num_frames: frames, of the form 8n+1 for LTX-Video; None: the preset's
            height: pixels, a multiple of 32 for LTX-Video; None: the preset's
            width: pixels, a multiple of 32 for LTX-Video; None: the preset's
            fps: frames per second of the files; None: the preset's
            cfg_scale: CFG panel: guidance scale w
            cfg_rescale: CFG panel: rescale toward std(eps_c), 0 (off) to 1
            stg_cfg_scale: CFG + STG panel: guidance scale w
            stg_scale: CFG + STG panel: STG scale s
            stg_mode: CFG + STG panel: "stg-r" (residual skip) or "stg-a" (attention skip)
            stg_blocks: CFG + STG panel: perturbed blocks, such as "19" or "14, 19"; empty: the preset's
            rescale: CFG + STG panel: rescale toward std(eps_c), 0 (off) to 1
            stg_window_start: CFG + STG panel: fraction of the steps where STG starts
            stg_window_end: CFG + STG panel: fraction of the steps where STG ends
        Returns:
            CFG video, CFG + STG video, side-by-side video with captions, settings JSON file, seed
        """
        left = self._cfg_panel(cfg_scale, cfg_rescale)
        right = self._stg_panel(stg_cfg_scale, stg_scale, stg_mode, self._blocks(stg_blocks), rescale,
                                stg_window_start, stg_window_end)
        videos, fps = self._run(prompt, [left, right], negative_prompt, image, seed, steps, num_frames, height, width,
                                fps, progress, request)
        labels = results.comparison_labels(left, right)
        paths = [self._mp4(v.frames, fps, tag) for v, tag in zip(videos, ("cfg", "cfg-stg"))]
        both = stg_video.side_by_side([v.frames for v in videos], labels, gap=4)
        paths.append(self._mp4(both, fps, "side-by-side"))
        return (*paths, self._settings(results.settings_document(videos, labels, fps)), videos[0].seed)

    def generate(self, prompt, negative_prompt=None, image=None, seed=0, steps=None, num_frames=None, height=None,
                 width=None, fps=None, stg_cfg_scale=None, stg_scale=None, stg_mode=None, stg_blocks=None,
                 rescale=None, stg_window_start=None, stg_window_end=None,
                 progress=gr.Progress(track_tqdm=ON_ZERO_GPU), request: gr.Request = None):
        """Make one panel with the CFG + STG settings (stg_scale=0 gives plain CFG); parameters as in /compare.

        Returns:
            video, settings JSON file, seed
        """
        panel = self._stg_panel(stg_cfg_scale, stg_scale, stg_mode, self._blocks(stg_blocks), rescale,
                                stg_window_start, stg_window_end)
        videos, fps = self._run(prompt, [panel], negative_prompt, image, seed, steps, num_frames, height, width, fps,
                                progress, request)
        label = results.label("CFG + STG" if panel.uses_stg else "CFG", panel)
        settings = self._settings(results.settings_document(videos, [label], fps))
        return self._mp4(videos[0].frames, fps, "panel"), settings, videos[0].seed

    def sweep(self, prompt, negative_prompt=None, image=None, seed=0, steps=None, num_frames=None, height=None,
              width=None, fps=None, cfg_scale=None, cfg_rescale=None, stg_cfg_scale=None, stg_scale=None,
              stg_mode=None, candidate_blocks=None, rescale=None, stg_window_start=None, stg_window_end=None,
              progress=gr.Progress(track_tqdm=ON_ZERO_GPU), request: gr.Request = None):
        """Make the CFG video and one CFG + STG video per candidate block, same prompt and seed, in batched runs.

        Parameters are those of /compare, with candidate_blocks in place of stg_blocks; steps, num_frames, height
        and width default to a reduced size (half the preset's steps, frames and resolution). The table has the
        columns block, label, motion, flicker and sharpness: the CFG row first (no block), then a row per block.

        Args:
            prompt: what the video shows (at most 2000 characters)
            negative_prompt: what it should not show; None: the preset's
            image: first frame, for image-to-video models only
            seed: 0 to 4294967295; None: a random seed (the one used is returned)
            steps: denoising steps; None: half the preset's
            num_frames: frames, of the form 8n+1 for LTX-Video; None: about half the preset's
            height: pixels, a multiple of 32 for LTX-Video; None: about half the preset's
            width: pixels, a multiple of 32 for LTX-Video; None: about half the preset's
            fps: frames per second of the grid video; None: the preset's
            cfg_scale: CFG video: guidance scale w
            cfg_rescale: CFG video: rescale toward std(eps_c), 0 (off) to 1
            stg_cfg_scale: CFG + STG videos: guidance scale w
            stg_scale: CFG + STG videos: STG scale s, above 0
            stg_mode: CFG + STG videos: "stg-r" (residual skip) or "stg-a" (attention skip)
            candidate_blocks: blocks to try, such as "0, 4, 8" (at most 16); empty: about eight across the depth
            rescale: CFG + STG videos: rescale toward std(eps_c), 0 (off) to 1
            stg_window_start: CFG + STG videos: fraction of the steps where STG starts
            stg_window_end: CFG + STG videos: fraction of the steps where STG ends
        Returns:
            grid video (CFG, then a labelled cell per block), figures table, the table as CSV, settings JSON file, seed
        """
        reference = self._cfg_panel(cfg_scale, cfg_rescale)
        blocks = self._candidates(candidate_blocks)
        candidate = self._stg_panel(stg_cfg_scale, stg_scale, stg_mode, blocks, rescale, stg_window_start,
                                    stg_window_end, SWEEP_NAMES)
        if not candidate.stg_scale:
            raise gr.Error("stg_scale must be above 0 for a block sweep: at 0 every candidate is the CFG video",
                           print_exception=False)
        size = self.explorer_defaults
        videos, fps = self._run(prompt, [reference, candidate], negative_prompt, image, seed,
                                _pick(steps, size["steps"]), _pick(num_frames, size["num_frames"]),
                                _pick(height, size["height"]), _pick(width, size["width"]), fps, progress, request,
                                blocks=blocks)
        first, others = videos[0], videos[1:]
        panels = sweep_panels(reference, candidate, blocks)
        document = results.settings_document(videos, results.sweep_labels(panels[0], panels[1:]), fps)
        rows = results.sweep_table(document)
        table = self._new_file("figures", ".csv")
        results.write_csv(rows, table)
        return (self._mp4(results.sweep_grid(first, others), fps, "grid"),
                {"headers": TABLE_COLUMNS, "data": [[row[name] for name in TABLE_COLUMNS] for row in rows]},
                str(table), self._settings(document), first.seed)

    @staticmethod
    def figures(settings_path):
        """The figures under the CFG and CFG + STG videos, read from a comparison's settings JSON."""
        try:
            panels = json.loads(Path(settings_path).read_text())["panels"]
        except (TypeError, OSError, ValueError, KeyError):
            return "", ""
        if len(panels) != 2:  # not a comparison
            return "", ""
        cfg, with_stg = (panel["figures"] for panel in panels)
        return figures_markdown(cfg), figures_markdown(with_stg, cfg) + "  \n" + motion_verdict(cfg, with_stg)

    def use_block(self, evt: gr.SelectData):
        """A click on a row of the explorer's table: its block goes to the Compare tab's blocks."""
        try:
            block = int((evt.row_value or [None])[0])
        except (TypeError, ValueError):  # the CFG row: no block
            block = None
        if block is None or not 0 <= block < self.backend.depth:
            return gr.update(), "The CFG row has no block: click the row of a candidate block."
        gr.Info(f"Block {block} is now in the Compare tab's blocks.")
        return str(block), f"Block {block} is now in the Compare tab's blocks (CFG + STG, Advanced)."

    @staticmethod
    def prefill(prompt, seed, seed_used, copied):
        """On opening the explorer: a prompt new on the Compare tab comes over with its seed (else nothing changes)."""
        if not prompt or not prompt.strip() or prompt == copied:
            return gr.skip(), gr.skip(), gr.skip()
        return prompt, seed_used if seed_used is not None else seed, prompt

    @staticmethod
    def summary(table) -> str:
        """One line under the explorer's table: which block kept the most motion, against the CFG video."""
        data = getattr(table, "values", None)
        rows = [list(row) for row in data] if data is not None else []
        if len(rows) < 2:
            return ""
        motion = TABLE_COLUMNS.index("motion")
        best = max(rows[1:], key=lambda row: row[motion])
        return (f"Most motion: **{best[1]}**, {best[motion]:.2f} px a frame against {rows[0][motion]:.2f} px with "
                "CFG alone. Click a row to use its block on the Compare tab.")

    def example(self, prompt):
        """An example prompt with every other setting at the preset's defaults (cached on first use)."""
        return self.compare(prompt)

    def stop(self, request: gr.Request = None):
        """Stop this browser session's running request after its current step."""
        session = getattr(request, "session_hash", None)
        for control in list(_CONTROLS.values()):
            if session is not None and control.session == session:
                control.stop.set()

    @staticmethod
    def pick_seed(seed, randomize):
        if randomize or seed is None:
            return random.randint(0, MAX_SEED)
        return int(seed)

    # -- internals ---------------------------------------------------------------------------------
    def _cfg_panel(self, cfg_scale, cfg_rescale) -> stg.Guidance:
        d = self.defaults
        with _named(LEFT_NAMES):
            return stg.Guidance(_pick(cfg_scale, d["cfg_scale"]), rescale=_pick(cfg_rescale, d["cfg_rescale"]))

    def _blocks(self, stg_blocks) -> list[int]:
        return parse_blocks(stg_blocks, self.backend.depth, self.defaults["stg_blocks"])

    def _candidates(self, candidate_blocks) -> list[int]:
        depth = self.backend.depth
        blocks = parse_blocks(candidate_blocks, depth, results.default_candidates(depth), "candidate_blocks")
        blocks = list(dict.fromkeys(blocks))  # each block once, in the order given
        if len(blocks) > MAX_CANDIDATES:
            raise gr.Error(f"candidate_blocks: at most {MAX_CANDIDATES} blocks a sweep, got {len(blocks)}",
                           print_exception=False)
        return blocks

    def _stg_panel(self, cfg_scale, stg_scale, stg_mode, blocks, rescale, start, end,
                   names=RIGHT_NAMES) -> stg.Guidance:
        d = self.defaults
        with _named(names):
            panel = stg.Guidance(_pick(cfg_scale, d["cfg_scale"]), stg_scale=_pick(stg_scale, d["stg_scale"]),
                                 stg_mode=_pick(stg_mode, d["stg_mode"]), stg_blocks=blocks,
                                 rescale=_pick(rescale, d["rescale"]),
                                 window=(_pick(start, d["window"][0]), _pick(end, d["window"][1])))
            panel.check_depth(self.backend.depth)
        return panel

    def _run(self, prompt, guidances, negative_prompt, image, seed, steps, num_frames, height, width, fps, progress,
             request, blocks=None):
        """Check, then denoise on the GPU: the guidances' panels, or with blocks a sweep (guidances: reference,
        candidate). Returns the videos in panel order and the fps."""
        preset = self.backend.preset
        fps = _pick(fps, preset.fps)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
            raise gr.Error(f"fps must be a number in [{FPS_RANGE[0]}, {FPS_RANGE[1]}], got {fps!r}", print_exception=False)
        if seed is None:
            seed = random.randint(0, MAX_SEED)
        options = dict(
            negative_prompt=_pick(negative_prompt, self.defaults["negative_prompt"]),
            image=load_image(image, self.backend.image_to_video), seed=seed, steps=_int(steps), num_frames=_int(num_frames),
            height=_int(height), width=_int(width))
        token = uuid.uuid4().hex
        job = dict(kind="run" if blocks is None else "sweep", backend=id(self.backend), token=token, prompt=prompt,
                   guidances=list(guidances), blocks=blocks, panels_per_run=PANELS_PER_RUN, options=options)
        panels = _panels(job)
        with _named({}):  # refuse bad input here, before any GPU time is reserved
            checked = self.backend.check(prompt, panels, **options)
        options.update(steps=checked.steps, num_frames=checked.num_frames, height=checked.height, width=checked.width)
        runs = 1 if blocks is None else math.ceil(len(panels) / PANELS_PER_RUN)
        _CONTROLS[token] = RunControl(getattr(request, "session_hash", None), task=_current_task(), progress=progress)
        try:
            if progress is not None and not ON_ZERO_GPU:
                progress((0, options["steps"] * runs), desc="Waiting for the GPU", unit="steps")
            videos = run_on_gpu(job)
        except gr.Error:
            raise
        except Exception as error:  # a bug, not the user's doing: the log gets the trace, the user a line
            traceback.print_exc()
            raise gr.Error(f"Generation failed ({type(error).__name__}); the server log has the details. "
                           "Please try again.", print_exception=False) from None
        finally:
            _CONTROLS.pop(token, None)
        if progress is not None and not ON_ZERO_GPU:
            progress(1.0, desc="Writing videos")
        return videos, fps

    def _new_file(self, tag: str, suffix: str) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=f"stg-{tag}-", suffix=suffix, dir=self.output_dir)
        os.close(handle)
        return Path(path)

    def _mp4(self, frames, fps, tag: str) -> str:
        return str(stg_video.write_mp4(frames, self._new_file(tag, ".mp4"), fps))

    def _settings(self, document: dict) -> str:
        """Writes a settings document (shared settings, then per panel its guidance, figures and frames' SHA-256)."""
        path = self._new_file("settings", ".json")
        path.write_text(json.dumps(document, indent=2))
        return str(path)


def _pick(value, default):
    return default if value is None or (isinstance(value, str) and not value.strip()) else value


def _int(value):
    """Whole floats (sliders send 9.0) to int; anything else goes to the engine's check as is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _current_task():
    """The asyncio task Gradio runs this request in. Gradio cancels it on Stop or a client's cancel, but a
    sync function's worker thread runs on; the step callback polls task.done() to stop within a step."""
    event_id = LocalContext.event_id.get(None)
    if event_id is None:
        return None

    def find():
        for task in asyncio.all_tasks():
            if task.get_name().endswith(f"<gradio-sep>{event_id}"):  # gradio.utils.set_task_name
                return task
        return None

    try:
        return anyio.from_thread.run_sync(find)
    except Exception:
        return None


# -- the page --------------------------------------------------------------------------------------
CSS = """
.banner {background: #fff4d6; border: 1px solid #e8b93a; border-radius: 8px; padding: 6px 14px;}
.banner p {color: #5c4300 !important; margin: 0;}
.panel-title h3 {margin: 0;}
#header h1 {margin-bottom: 0.2em;}
"""


def header_markdown(backend: stg.Backend) -> str:
    preset = backend.preset
    return (
        "# STG Studio\n"
        "**Spatiotemporal Skip Guidance (STG)** improves video diffusion sampling without any training: at every step "
        "it also runs the model with a few transformer blocks skipped, a weaker copy of itself, and steers the "
        "prediction away from that copy. Here one prompt and one seed are rendered with classifier-free guidance "
        "alone (left) and with CFG + STG (right).\n\n"
        "`eps = eps_u + w (eps_c - eps_u) + s (eps_c - eps_p)`: eps_u negative prompt, eps_c prompt, "
        f"eps_p prompt with the chosen blocks perturbed · [paper: arXiv 2411.18664]({PAPER})\n\n"
        f"Model: **{preset.title}** (`{backend.model}`, {backend.depth} blocks) on **{backend.device}**, "
        f"{str(backend.dtype).removeprefix('torch.')}"
    )


def banner_markdown(backend: stg.Backend, reason: str = "") -> str:
    why = f" ({reason})" if reason else ""
    return (f"**Offline tiny model{why}.** Its weights are random, so the videos are noise-like: they show how the "
            "app works, not what STG does. Start with `--model ltx-video` on a GPU for real videos.")


FIGURES_HELP = (
    "**Figures under each video**\n"
    "- *Motion*: mean shift between consecutive frames, in pixels (phase correlation on tiles, a cheap stand-in "
    "for optical flow).\n"
    "- *Flicker*: mean change of the frame brightness from one frame to the next (0-255; lower is steadier).\n"
    "- *Sharpness*: variance of the Laplacian (higher is crisper).\n"
    "- The paper's claim: CFG alone loses motion, STG keeps it. Compare the motion figures to see whether it "
    "holds for this prompt and seed. The settings JSON has them too."
)


def figures_markdown(figures: dict, reference: dict | None = None) -> str:
    """'motion **1.20** px · flicker **0.31** · sharpness **812**', with the change against reference if given."""
    def shown(name: str, unit: str = "") -> str:
        value = figures[name]
        text = f"{name} **{value:.2f}**{unit}" if value < 100 else f"{name} **{value:.0f}**{unit}"
        if reference is not None and reference[name]:
            text += f" ({round((value / reference[name] - 1) * 100):+d}% vs CFG)"
        return text

    return " · ".join([shown("motion", " px"), shown("flicker"), shown("sharpness")])


def motion_verdict(cfg: dict, with_stg: dict) -> str:
    """Whether this comparison shows the paper's claim; changes under SAME_MOTION percent count as none."""
    before, after = cfg["motion"], with_stg["motion"]
    change = (after / before - 1) * 100 if before else (100.0 if after else 0.0)
    if change >= SAME_MOTION:
        return "More motion with STG than with CFG alone, as the paper reports."
    if change <= -SAME_MOTION:
        return "Less motion with STG than with CFG alone: the paper's claim does not show on this prompt and seed."
    return f"About as much motion with STG as with CFG alone (within {SAME_MOTION}%)."


def _reduced(backend: stg.Backend, steps: float, frames: float) -> dict:
    """The preset's steps and frames times these shares and half its resolution, kept within its limits."""
    d, lim = backend.preset.defaults, backend.preset.limits
    step = lim["num_frames"]["step"]
    size = {name: max(lim[name]["min"], d[name] // 2 // lim[name]["multiple"] * lim[name]["multiple"])
            for name in ("height", "width")}
    frame_count = (int(d["num_frames"] * frames) - 1) // step * step + 1  # of the form step * n + 1
    return dict(steps=max(lim["steps"]["min"], int(d["steps"] * steps)),
                num_frames=max(lim["num_frames"]["min"], frame_count), **size)


EXPLORER_HELP = (
    "Which block to perturb depends on the model. Here the CFG video and one CFG + STG video per candidate block "
    "are made from the same prompt and seed, at a reduced size, and shown in one labelled grid with their figures. "
    "Click a row of the table to use its block on the Compare tab. The negative prompt, the guidance scales w, "
    "the CFG rescale, the STG window and the frames per second are the Compare tab's."
)


def _size_controls(lim: dict, values: dict) -> list:
    """Steps, frames, height and width sliders at these values, each guarded with its API name."""
    steps = gr.Slider(lim["steps"]["min"], lim["steps"]["max"], value=values["steps"], step=1, label="Steps")
    frames = gr.Slider(lim["num_frames"]["min"], lim["num_frames"]["max"], value=values["num_frames"],
                       step=lim["num_frames"]["step"], label="Frames")
    with gr.Row():
        height = gr.Slider(lim["height"]["min"], lim["height"]["max"], value=values["height"],
                           step=lim["height"]["multiple"], label="Height")
        width = gr.Slider(lim["width"]["min"], lim["width"]["max"], value=values["width"],
                          step=lim["width"]["multiple"], label="Width")
    _guard(steps, "steps", f"an integer in [{lim['steps']['min']}, {lim['steps']['max']}]")
    frame_rule = lim["num_frames"]
    _guard(frames, "num_frames", f"of the form {frame_rule['step']}n+1 in [{frame_rule['min']}, {frame_rule['max']}]")
    for component, name in ((height, "height"), (width, "width")):
        _guard(component, name, f"a multiple of {lim[name]['multiple']} in [{lim[name]['min']}, {lim[name]['max']}]")
    return [steps, frames, height, width]


def _stg_controls(d: dict, modes: list) -> tuple:
    """Created where the caller is: STG mode, STG scale s, rescale (each guarded with its API name)."""
    mode = _guard(gr.Radio(modes, value=d["stg_mode"], label="Mode", render=False), "stg_mode",
                  f"one of {', '.join(stg.MODES)}")
    scale = _guard(gr.Slider(0, 10, value=d["stg_scale"], step=0.05, label="STG scale s", render=False), "stg_scale",
                   "a number in [0, 10]")
    rescale = _guard(gr.Slider(0, 1, value=d["rescale"], step=0.05, label="Rescale (0: off)", render=False),
                     "rescale", "a number in [0, 1]")
    return mode, scale, rescale


def build_demo(backend: stg.Backend, reason: str = "", *, delete_cache=DELETE_CACHE, output_dir=None) -> gr.Blocks:
    """The page and its API around one loaded backend. Launch with `serve`."""
    studio = Studio(backend, output_dir)
    preset, d, lim = backend.preset, backend.preset.defaults, backend.preset.limits
    modes = [(f"{key}: {text}", key) for key, text in stg.MODES.items()]
    settings_presets = {"Official recipe": dict(steps=d["steps"], num_frames=d["num_frames"],
                                                                 height=d["height"], width=d["width"]),
                        "Quick preview": _reduced(backend, steps=0.25, frames=0)}
    depth_text = f"this model has {backend.depth}: 0-{backend.depth - 1}"

    with gr.Blocks(title="STG Studio", delete_cache=delete_cache) as demo:
        video = dict(autoplay=True, loop=True, interactive=False, render=False)
        left_video = gr.Video(label="CFG", elem_id="cfg-video", **video)
        right_video = gr.Video(label="CFG + STG", elem_id="stg-video", **video)
        both_video = gr.Video(label="Side by side", show_label=False, elem_id="both-video", **video)
        settings_file = gr.File(label="Settings (JSON)", interactive=False, render=False)
        seed_used = gr.Number(label="Seed used", precision=0, interactive=False, render=False)
        outputs = [left_video, right_video, both_video, settings_file, seed_used]

        gr.Markdown(header_markdown(backend), elem_id="header")
        if preset.is_tiny:
            gr.Markdown(banner_markdown(backend, reason), elem_classes="banner")
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        prompt = gr.Textbox(label="Prompt", lines=3, max_length=MAX_PROMPT_CHARS,
                                            placeholder=preset.examples[0] if preset.examples else "")
                        negative = gr.Textbox(label="Negative prompt", value=d["negative_prompt"], lines=1,
                                              max_length=MAX_PROMPT_CHARS)
                        image = gr.Image(label="First frame", type="filepath", image_mode=None,
                                         sources=["upload", "clipboard"], visible=backend.image_to_video, height=240)
                        with gr.Row():
                            run = gr.Button("Generate", variant="primary", scale=3)
                            stop = gr.Button("Stop", variant="stop", scale=1)
                        if preset.examples:
                            gr.Examples([[p] for p in preset.examples], inputs=[prompt], fn=studio.example,
                                        outputs=outputs, cache_examples=True, cache_mode="lazy",
                                        label="Example prompts")
                    with gr.Column(scale=2):
                        recipe = gr.Dropdown(list(settings_presets), value=list(settings_presets)[0],
                                             label="Settings preset")
                        with gr.Row():
                            seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED, scale=2)
                            randomize = gr.Checkbox(label="Randomize seed", value=True, scale=1)
                        sizes = _size_controls(lim, d)
                        fps = gr.Slider(FPS_RANGE[0], FPS_RANGE[1], value=preset.fps, step=1, label="Frames per second")
                with gr.Row(equal_height=False):
                    with gr.Column(variant="panel"):
                        gr.Markdown("### CFG", elem_classes="panel-title")
                        cfg_scale = gr.Slider(0, 20, value=d["cfg_scale"], step=0.1, label="Guidance scale w")
                        with gr.Accordion("Advanced", open=False):
                            cfg_rescale = gr.Slider(0, 1, value=d["cfg_rescale"], step=0.05, label="Rescale (0: off)")
                        left_video.render()
                        cfg_figures = gr.Markdown(elem_id="cfg-figures", elem_classes="figures")
                    with gr.Column(variant="panel"):
                        gr.Markdown("### CFG + STG", elem_classes="panel-title")
                        mode, stg_scale, rescale = _stg_controls(d, modes)
                        with gr.Row():
                            stg_cfg_scale = gr.Slider(0, 20, value=d["cfg_scale"], step=0.1, label="Guidance scale w")
                            stg_scale.render()
                        with gr.Accordion("Advanced", open=False):
                            mode.render()
                            blocks = gr.Textbox(value=blocks_text(d["stg_blocks"]), max_lines=1,
                                                label=f"Blocks ({depth_text})",
                                                info="Comma-separated, such as 19 or 14, 19; empty: the preset's")
                            rescale.render()
                            with gr.Row():
                                start = gr.Slider(0, 1, value=d["window"][0], step=0.05,
                                                  label="STG from (fraction of steps)")
                                end = gr.Slider(0, 1, value=d["window"][1], step=0.05, label="STG until")
                        right_video.render()
                        stg_figures = gr.Markdown(elem_id="stg-figures", elem_classes="figures")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        gr.Markdown("**Side by side**: one file, so both halves always play in sync")
                        both_video.render()
                    with gr.Column(scale=1):
                        settings_file.render()
                        seed_used.render()
                        gr.Markdown(FIGURES_HELP, elem_classes="figures-help")

            with gr.Tab("Block explorer", id="explorer") as explorer_tab:
                gr.Markdown(EXPLORER_HELP)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        x_prompt = gr.Textbox(label="Prompt to explore", lines=2, max_length=MAX_PROMPT_CHARS,
                                              placeholder="Opening this tab brings the Compare tab's prompt and seed")
                        candidates = gr.Textbox(
                            value=blocks_text(results.default_candidates(backend.depth)), max_lines=1,
                            label=f"Candidate blocks, one video each ({depth_text})",
                            info=f"Comma-separated, at most {MAX_CANDIDATES}; empty: about eight spread over the depth")
                        with gr.Row():
                            explore = gr.Button("Explore", variant="primary", scale=3)
                            x_stop = gr.Button("Stop", variant="stop", scale=1)
                        x_mode, x_scale, x_rescale = _stg_controls(d, modes)
                        x_mode.render()
                        with gr.Row():
                            x_scale.render()
                            x_rescale.render()
                    with gr.Column(scale=2, elem_id="explorer-settings"):
                        x_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED)
                        x_sizes = _size_controls(lim, studio.explorer_defaults)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        grid_video = gr.Video(label="CFG, then one CFG + STG video per block", elem_id="grid-video",
                                              autoplay=True, loop=True, interactive=False, height=560)
                    with gr.Column(scale=2):
                        table = gr.Dataframe(headers=TABLE_COLUMNS, datatype=["number", "str", "number", "number",
                                             "number"], label="Figures per video (click a row to use its block)",
                                             interactive=False, elem_id="sweep-table")
                        x_summary = gr.Markdown(elem_id="sweep-summary")
                        x_note = gr.Markdown(elem_id="sweep-note")
                        csv_file = gr.File(label="Figures (CSV)", interactive=False)
                        x_settings = gr.File(label="Grid settings (JSON)", interactive=False)
                        x_seed_used = gr.Number(label="Seed of this grid", precision=0, interactive=False)
        gr.Markdown("Use it from Python: `gradio_client.Client(url).predict(prompt=..., api_name=\"/compare\")`, "
                    "or `api_name=\"/sweep\"` for the block explorer; the API page below lists every parameter.")

        for component in (seed, x_seed):
            _guard(component, "seed", f"an integer in [0, {MAX_SEED}]")
        _guard(fps, "fps", f"a number in [{FPS_RANGE[0]}, {FPS_RANGE[1]}]")
        for component, name in ((cfg_scale, "cfg_scale"), (stg_cfg_scale, "stg_cfg_scale")):
            _guard(component, name, "a number in [0, 20]")
        for component, name in ((cfg_rescale, "cfg_rescale"), (start, "stg_window_start"), (end, "stg_window_end")):
            _guard(component, name, "a number in [0, 1]")
        _guard(image, "image", "a PNG, JPEG, WebP, BMP or GIF picture")

        common = [prompt, negative, image, seed, *sizes, fps]
        right = [stg_cfg_scale, stg_scale, mode, blocks, rescale, start, end]
        gpu_event = dict(concurrency_limit=1, concurrency_id="gpu")
        private = dict(queue=False, api_visibility="private")
        compare_event = run.click(studio.pick_seed, [seed, randomize], seed, **private).then(
            studio.compare, common + [cfg_scale, cfg_rescale] + right,
            outputs, api_name="compare", **gpu_event)
        hidden = gr.Button(visible=False)
        hidden.click(studio.generate, common + right, [right_video, settings_file, seed_used], api_name="generate",
                     **gpu_event)
        stop.click(studio.stop, None, None, cancels=[compare_event], **private)
        recipe.change(lambda key: [settings_presets[key][k] for k in ("steps", "num_frames", "height", "width")],
                      recipe, sizes, **private)
        settings_file.change(studio.figures, settings_file, [cfg_figures, stg_figures], **private)

        sweep_inputs = [x_prompt, negative, image, x_seed, *x_sizes, fps, cfg_scale, cfg_rescale, stg_cfg_scale,
                        x_scale, x_mode, candidates, x_rescale, start, end]
        sweep_event = explore.click(studio.sweep, sweep_inputs, [grid_video, table, csv_file, x_settings, x_seed_used],
                                    api_name="sweep", **gpu_event)
        x_stop.click(studio.stop, None, None, cancels=[sweep_event], **private)
        table.change(studio.summary, table, x_summary, **private)
        table.select(studio.use_block, None, [blocks, x_note], api_visibility="private")  # queued: shows gr.Info
        copied = gr.State("")  # the Compare tab's prompt as last brought over
        explorer_tab.select(studio.prefill, [prompt, seed, seed_used, copied], [x_prompt, x_seed, copied], **private)
    return demo


def serve(demo: gr.Blocks, *, max_size: int = QUEUE_SIZE, **launch_kwargs):
    """Queue (bounded) and launch; keyword arguments go to `Blocks.launch`."""
    launch_kwargs.setdefault("max_file_size", UPLOAD_LIMIT)
    return demo.queue(max_size=max_size, default_concurrency_limit=1).launch(
        css=CSS, theme=gr.themes.Soft(), **launch_kwargs)


ARGS = parse_args(sys.argv[1:])
try:
    BACKEND, FALLBACK_REASON = load_backend(ARGS.model or os.environ.get("STG_MODEL") or None, ARGS.offload)
except ValueError as error:  # an unknown preset, folder or pipeline: say so in one line
    raise SystemExit(f"STG Studio: {error}") from None
demo = build_demo(BACKEND, FALLBACK_REASON)

if __name__ == "__main__":
    serve(demo, server_port=ARGS.port, share=ARGS.share or None)
