"""STG Studio: one prompt and seed, a CFG video beside a CFG + STG video, in the browser and over HTTP.

    python app.py                  # LTX-Video 2B from the hub on a GPU (falls back to the offline tiny model)
    python app.py --model tiny     # offline, CPU, random weights
    STG_MODEL=KEY|ID|PATH python app.py

The page and the API (`/compare`, `/generate`) only wire Gradio components to `stg.Backend`.
"""

from __future__ import annotations

try:  # Imported before torch: on a ZeroGPU Space it patches CUDA start-up.
    import spaces
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    spaces = None

import argparse
import asyncio
import hashlib
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
from dataclasses import dataclass, field
from pathlib import Path

import anyio.from_thread
import gradio as gr
import torch
from gradio.context import LocalContext
from PIL import Image, ImageOps, UnidentifiedImageError

import stg
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


def _work(job: dict) -> float:
    """Transformer passes x steps x frames x pixels: what the run's GPU time grows with."""
    options = job["options"]
    backend = _BACKENDS[job["backend"]]
    sizes = [options.get(k) or backend.preset.defaults[k] for k in ("steps", "num_frames", "height", "width")]
    passes = sum(1 + (1.0 if g.cfg_scale != 1 else 0) + (0.5 if g.uses_stg else 0) for g in job["guidances"])
    return math.prod(sizes) * passes


def gpu_duration(job: dict) -> int:
    """ZeroGPU seconds to reserve: about 60 s for the official 40 x 121 x 512 x 768 comparison on an H200."""
    return int(min(MAX_GPU_SECONDS, 20 + 6e-9 * _work(job)))


@gpu(duration=gpu_duration)
def run_on_gpu(job: dict) -> list:
    """Denoise one request (picklable in and out, as ZeroGPU needs); only gr.Error leaves it."""
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
            return backend.run(job["prompt"], job["guidances"], callback=on_step, **job["options"])
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
def parse_blocks(text, depth: int, default) -> list[int]:
    """'14, 19' -> [14, 19]; empty or None -> the preset's blocks."""
    if text is None or not str(text).strip():
        return list(default)
    parts = [p.strip() for p in re.split(r"[,\s]+", str(text).strip()) if p.strip()]
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise gr.Error(f"stg_blocks must be block numbers separated by commas, such as '{default[0]}' or "
                       f"'{max(default[0] - 5, 0)}, {default[0]}' (this model has {depth} blocks: 0-{depth - 1}), "
                       f"got {str(text)[:60]!r}", print_exception=False)
    return [int(p) for p in parts]


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


def _sha256(frames) -> str:
    return hashlib.sha256(frames.tobytes()).hexdigest()


# -- the app ---------------------------------------------------------------------------------------
class Studio:
    """Request handlers around one backend; the Gradio functions are its methods."""

    def __init__(self, backend: stg.Backend, output_dir: str | os.PathLike | None = None):
        self.backend = backend
        self.defaults = backend.preset.defaults
        self.output_dir = Path(output_dir or Path(gr.utils.get_upload_folder()) / "stg-studio")
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
        right = self._stg_panel(stg_cfg_scale, stg_scale, stg_mode, stg_blocks, rescale, stg_window_start, stg_window_end)
        videos, fps = self._run(prompt, [left, right], negative_prompt, image, seed, steps, num_frames, height, width,
                                fps, progress, request)
        labels = [self._label("CFG", left), self._label("CFG + STG", right)]
        paths = [self._mp4(v.frames, fps, tag) for v, tag in zip(videos, ("cfg", "cfg-stg"))]
        both = stg_video.side_by_side([v.frames for v in videos], labels, gap=4)
        paths.append(self._mp4(both, fps, "side-by-side"))
        return (*paths, self._settings(videos, labels, fps), videos[0].seed)

    def generate(self, prompt, negative_prompt=None, image=None, seed=0, steps=None, num_frames=None, height=None,
                 width=None, fps=None, stg_cfg_scale=None, stg_scale=None, stg_mode=None, stg_blocks=None,
                 rescale=None, stg_window_start=None, stg_window_end=None,
                 progress=gr.Progress(track_tqdm=ON_ZERO_GPU), request: gr.Request = None):
        """Make one panel with the CFG + STG settings (stg_scale=0 gives plain CFG); parameters as in /compare.

        Returns:
            video, settings JSON file, seed
        """
        panel = self._stg_panel(stg_cfg_scale, stg_scale, stg_mode, stg_blocks, rescale, stg_window_start, stg_window_end)
        videos, fps = self._run(prompt, [panel], negative_prompt, image, seed, steps, num_frames, height, width, fps,
                                progress, request)
        label = self._label("CFG + STG" if panel.uses_stg else "CFG", panel)
        return self._mp4(videos[0].frames, fps, "panel"), self._settings(videos, [label], fps), videos[0].seed

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

    def _stg_panel(self, cfg_scale, stg_scale, stg_mode, stg_blocks, rescale, start, end) -> stg.Guidance:
        d = self.defaults
        blocks = parse_blocks(stg_blocks, self.backend.depth, d["stg_blocks"])
        with _named(RIGHT_NAMES):
            return stg.Guidance(_pick(cfg_scale, d["cfg_scale"]), stg_scale=_pick(stg_scale, d["stg_scale"]),
                                stg_mode=_pick(stg_mode, d["stg_mode"]), stg_blocks=blocks,
                                rescale=_pick(rescale, d["rescale"]),
                                window=(_pick(start, d["window"][0]), _pick(end, d["window"][1])))

    def _run(self, prompt, guidances, negative_prompt, image, seed, steps, num_frames, height, width, fps, progress,
             request):
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
        with _named({}):  # refuse bad input here, before any GPU time is reserved
            checked = self.backend.check(prompt, guidances, **options)
        options.update(steps=checked.steps, num_frames=checked.num_frames, height=checked.height, width=checked.width)
        token = uuid.uuid4().hex
        _CONTROLS[token] = RunControl(getattr(request, "session_hash", None), task=_current_task(), progress=progress)
        try:
            if progress is not None and not ON_ZERO_GPU:
                progress((0, options["steps"]), desc="Waiting for the GPU", unit="steps")
            job = dict(backend=id(self.backend), token=token, prompt=prompt, guidances=list(guidances), options=options)
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

    @staticmethod
    def _label(name: str, g: stg.Guidance) -> str:
        text = f"{name}: w {g.cfg_scale:g}"
        if g.uses_stg:
            text += f", s {g.stg_scale:g}, {g.stg_mode}, block{'s' if len(g.stg_blocks) > 1 else ''} " \
                    f"{', '.join(map(str, g.stg_blocks))}"
            if tuple(g.window) != (0.0, 1.0):
                text += f", steps {g.window[0]:g}-{g.window[1]:g}"
        if g.rescale:
            text += f", rescale {g.rescale:g}"
        return text

    def _new_file(self, tag: str, suffix: str) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=f"stg-{tag}-", suffix=suffix, dir=self.output_dir)
        os.close(handle)
        return Path(path)

    def _mp4(self, frames, fps, tag: str) -> str:
        return str(stg_video.write_mp4(frames, self._new_file(tag, ".mp4"), fps))

    def _settings(self, videos, labels, fps) -> str:
        first = dict(videos[0].settings)
        first.pop("guidance", None)
        first["fps"] = fps
        first["panels"] = [{"label": label, "guidance": v.settings["guidance"], "frames_sha256": _sha256(v.frames)}
                           for v, label in zip(videos, labels)]
        path = self._new_file("settings", ".json")
        path.write_text(json.dumps(first, indent=2))
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


def _quick(backend: stg.Backend) -> dict:
    d, lim = backend.preset.defaults, backend.preset.limits
    return dict(steps=max(lim["steps"]["min"], d["steps"] // 4), num_frames=lim["num_frames"]["min"],
                height=max(lim["height"]["min"], d["height"] // 2 // lim["height"]["multiple"] * lim["height"]["multiple"]),
                width=max(lim["width"]["min"], d["width"] // 2 // lim["width"]["multiple"] * lim["width"]["multiple"]))


def build_demo(backend: stg.Backend, reason: str = "", *, delete_cache=DELETE_CACHE, output_dir=None) -> gr.Blocks:
    """The page and its API around one loaded backend. Launch with `serve`."""
    studio = Studio(backend, output_dir)
    preset, d, lim = backend.preset, backend.preset.defaults, backend.preset.limits
    modes = [(f"{key}: {text}", key) for key, text in stg.MODES.items()]
    settings_presets = {"Official recipe": dict(steps=d["steps"], num_frames=d["num_frames"],
                                                                 height=d["height"], width=d["width"]),
                        "Quick preview": _quick(backend)}

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
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=3, max_length=MAX_PROMPT_CHARS,
                                    placeholder=preset.examples[0] if preset.examples else "")
                negative = gr.Textbox(label="Negative prompt", value=d["negative_prompt"], lines=1,
                                      max_length=MAX_PROMPT_CHARS)
                image = gr.Image(label="First frame", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                 visible=backend.image_to_video, height=240)
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", scale=3)
                    stop = gr.Button("Stop", variant="stop", scale=1)
                if preset.examples:
                    gr.Examples([[p] for p in preset.examples], inputs=[prompt], fn=studio.example, outputs=outputs,
                                cache_examples=True, cache_mode="lazy", label="Example prompts")
            with gr.Column(scale=2):
                recipe = gr.Dropdown(list(settings_presets), value=list(settings_presets)[0], label="Settings preset")
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED, scale=2)
                    randomize = gr.Checkbox(label="Randomize seed", value=True, scale=1)
                steps = gr.Slider(lim["steps"]["min"], lim["steps"]["max"], value=d["steps"], step=1, label="Steps")
                frames = gr.Slider(lim["num_frames"]["min"], lim["num_frames"]["max"], value=d["num_frames"],
                                   step=lim["num_frames"]["step"], label="Frames")
                with gr.Row():
                    height = gr.Slider(lim["height"]["min"], lim["height"]["max"], value=d["height"],
                                       step=lim["height"]["multiple"], label="Height")
                    width = gr.Slider(lim["width"]["min"], lim["width"]["max"], value=d["width"],
                                      step=lim["width"]["multiple"], label="Width")
                fps = gr.Slider(FPS_RANGE[0], FPS_RANGE[1], value=preset.fps, step=1, label="Frames per second")
        with gr.Row(equal_height=False):
            with gr.Column(variant="panel"):
                gr.Markdown("### CFG", elem_classes="panel-title")
                cfg_scale = gr.Slider(0, 20, value=d["cfg_scale"], step=0.1, label="Guidance scale w")
                with gr.Accordion("Advanced", open=False):
                    cfg_rescale = gr.Slider(0, 1, value=d["cfg_rescale"], step=0.05, label="Rescale (0: off)")
                left_video.render()
            with gr.Column(variant="panel"):
                gr.Markdown("### CFG + STG", elem_classes="panel-title")
                with gr.Row():
                    stg_cfg_scale = gr.Slider(0, 20, value=d["cfg_scale"], step=0.1, label="Guidance scale w")
                    stg_scale = gr.Slider(0, 10, value=d["stg_scale"], step=0.05, label="STG scale s")
                with gr.Accordion("Advanced", open=False):
                    mode = gr.Radio(modes, value=d["stg_mode"], label="Mode")
                    blocks = gr.Textbox(value=", ".join(map(str, d["stg_blocks"])), max_lines=1,
                                        label=f"Blocks (this model has {backend.depth}: 0-{backend.depth - 1})",
                                        info="Comma-separated, such as 19 or 14, 19; empty: the preset's")
                    rescale = gr.Slider(0, 1, value=d["rescale"], step=0.05, label="Rescale (0: off)")
                    with gr.Row():
                        start = gr.Slider(0, 1, value=d["window"][0], step=0.05, label="STG from (fraction of steps)")
                        end = gr.Slider(0, 1, value=d["window"][1], step=0.05, label="STG until")
                right_video.render()
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                gr.Markdown("**Side by side**: one file, so both halves always play in sync")
                both_video.render()
            with gr.Column(scale=1):
                settings_file.render()
                seed_used.render()
                # Per-panel figures (motion, flicker, sharpness) belong in this column.
        gr.Markdown("Use it from Python: `gradio_client.Client(url).predict(prompt=..., api_name=\"/compare\")`; "
                    "the API page below lists every parameter.")

        _guard(seed, "seed", f"an integer in [0, {MAX_SEED}]")
        _guard(steps, "steps", f"an integer in [{lim['steps']['min']}, {lim['steps']['max']}]")
        frame_rule = lim["num_frames"]
        _guard(frames, "num_frames", f"of the form {frame_rule['step']}n+1 in [{frame_rule['min']}, {frame_rule['max']}]")
        for component, name in ((height, "height"), (width, "width")):
            _guard(component, name, f"a multiple of {lim[name]['multiple']} in [{lim[name]['min']}, {lim[name]['max']}]")
        _guard(fps, "fps", f"a number in [{FPS_RANGE[0]}, {FPS_RANGE[1]}]")
        for component, name, high in ((cfg_scale, "cfg_scale", 20), (stg_cfg_scale, "stg_cfg_scale", 20),
                                      (stg_scale, "stg_scale", 10)):
            _guard(component, name, f"a number in [0, {high}]")
        for component, name in ((cfg_rescale, "cfg_rescale"), (rescale, "rescale"), (start, "stg_window_start"),
                                (end, "stg_window_end")):
            _guard(component, name, "a number in [0, 1]")
        _guard(mode, "stg_mode", f"one of {', '.join(stg.MODES)}")
        _guard(image, "image", "a PNG, JPEG, WebP, BMP or GIF picture")

        common = [prompt, negative, image, seed, steps, frames, height, width, fps]
        right = [stg_cfg_scale, stg_scale, mode, blocks, rescale, start, end]
        gpu_event = dict(concurrency_limit=1, concurrency_id="gpu")
        compare_event = run.click(studio.pick_seed, [seed, randomize], seed, queue=False, api_visibility="private").then(
            studio.compare, common + [cfg_scale, cfg_rescale] + right,
            outputs, api_name="compare", **gpu_event)
        hidden = gr.Button(visible=False)
        hidden.click(studio.generate, common + right, [right_video, settings_file, seed_used], api_name="generate",
                     **gpu_event)
        stop.click(studio.stop, None, None, queue=False, api_visibility="private", cancels=[compare_event])
        recipe.change(lambda key: [settings_presets[key][k] for k in ("steps", "num_frames", "height", "width")],
                      recipe, [steps, frames, height, width], queue=False, api_visibility="private")
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
