"""The GPU runner: one request at a time on the GPU, stoppable within a step, with its progress shown.

On a ZeroGPU Space only `run_on_gpu` holds the GPU, in a forked worker: its argument and result are pickled, so
it gets a small `GpuJob` and finds the loaded backend and the request's controls by key. It runs under a
`spaces.GPU` function of the size the loaded model needs (chosen at start from its weights and activations), for
the seconds the request's transformer passes are expected to take. Whatever watches the runs (a log, the tests'
fault injection) installs a `RunHook` in HOOKS.
"""

from __future__ import annotations

try:  # Imported before torch: on a ZeroGPU Space it patches CUDA start-up.
    import spaces
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    spaces = None

import asyncio
import math
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field, replace

import anyio.from_thread
import gradio as gr
import torch
from gradio.context import LocalContext

from stg import Backend, Cancelled, Video
from stg.backend import Request
from stg.footprint import Footprint, measure

ON_ZERO_GPU = bool(spaces is not None and spaces.config.Config.zero_gpu)
gpu = spaces.GPU if spaces is not None else (lambda **_: (lambda fn: fn))

# ZeroGPU runs on NVIDIA RTX Pro 6000 Blackwell cards: `size="large"` (the default) is half a card with 48 GB,
# `size="xlarge"` the whole card with 96 GB at twice the quota (hub-docs docs/hub/spaces-zerogpu.md, commit 242f4a1,
# 2026-08-22). The whole card's bytes are those spaces 0.51.3 lists for it (spaces/zero/configs.json).
CARD_BYTES = 101_973_950_464
GPU_BYTES = {"large": CARD_BYTES // 2, "xlarge": CARD_BYTES}  # smallest first: the first that fits is taken
CARD_SHARE = {"large": 0.5, "xlarge": 1.0}  # of the card's compute
# The estimate below is for the size's own share of the card. spaces 0.51.3 also multiplies the duration asked for
# on a half card by 1.5 where it recognises this card (zero/configs.json duration_factor, zero/client.py
# get_duration_seconds): slack on top, not relied on, since it depends on what the serving process can see.
# Dense bf16 tensor throughput of a whole RTX Pro 6000 Blackwell: 503.8 TFLOPS (spec listing
# hmc-tech.com/gpu/nvidia-rtx-pro-6000-blackwell-vs-amd-radeon-pro-duo-polaris; about an eighth of NVIDIA's
# 4 PFLOPS sparse FP4 figure).
CARD_FLOPS = 503.8e12
# The share of that a denoising step achieves: assumed, not measured on this card (`python -m stg.bench --config
# ltx-video-2b --device cuda` prints the achieved TFLOP/s on any CUDA machine).
EFFICIENCY = 0.3
START_SECONDS = 20  # text encoding, decoding and handing the videos back, on top of the denoising
MAX_GPU_SECONDS = 240  # the most one request reserves (its quota cost doubles on xlarge)
RESERVE_BYTES = 2 * 2 ** 30  # the CUDA context and the allocator's slack


@dataclass(frozen=True)
class GpuJob:
    """What the GPU function gets: the backend's key, the request's token (its controls) and the checked request."""

    backend: int
    token: str
    request: Request


@dataclass
class RunControl:
    """How one request is stopped and shows its progress, looked up by its token."""

    session: str | None
    task: object = None  # the asyncio task serving the request; done() once Gradio cancels it
    stop: threading.Event = field(default_factory=threading.Event)
    progress: object = None
    step: int = 0  # the last step done, of total (0: none yet; on ZeroGPU the worker's copy counts, not this one)
    total: int = 0

    def stopped(self) -> bool:
        return self.stop.is_set() or (self.task is not None and self.task.done())

    def report(self, step: int, total: int, started: float) -> None:
        self.step, self.total = step, total
        if self.progress is not None and not ON_ZERO_GPU:
            left = (time.monotonic() - started) / step * (total - step)
            self.progress((step, total), desc=f"Step {step} of {total}, about {left:.0f} s left", unit="steps")


@dataclass
class RunRecord:
    """How a run went: done, stopped, refused, out of memory or failed; its last step; when it held the GPU."""

    token: str
    status: str = "done"
    step: int = 0
    steps: int = 0
    started: float = 0.0
    at: float = 0.0  # when the last step ended
    released: float = 0.0
    seconds: float = 0.0


class RunHook:
    """Watches every run: `step` after each denoising step (raising stops the run, as a fault would), `ended` with
    the run's record."""

    def step(self, step: int, total: int) -> None:
        pass

    def ended(self, record: RunRecord) -> None:
        pass


BACKENDS: dict[int, Backend] = {}
CONTROLS: dict[str, RunControl] = {}
HOOKS: list[RunHook] = []
_GPU_LOCK = threading.Lock()  # a cancelled run leaves Gradio's slot at once but the GPU only after its step


FOOTPRINTS: dict[int, Footprint] = {}
SIZES: dict[int, str] = {}  # the ZeroGPU size each registered backend runs on
RUNNERS: dict[str, object] = {}  # the GPU function of each size, decorated once


def register(backend: Backend) -> None:
    """Make a backend known to the GPU worker (before it forks). On ZeroGPU, choose its GPU size from its weights and
    the activations of its default comparison; a model that fits neither size ends the app here, with one line saying
    what helps."""
    key = id(backend)
    BACKENDS[key] = backend
    SIZES[key] = "large"  # off ZeroGPU no size is asked for
    if ON_ZERO_GPU:
        FOOTPRINTS[key] = measure(backend.pipe, backend.experts[0][1], backend.depth,
                                   factorized=backend.family.temporal is not None)
        official = default_comparison(backend)
        try:
            SIZES[key] = gpu_size(FOOTPRINTS[key], official, backend.model)
        except ValueError as error:
            raise SystemExit(f"STG Studio: {error}") from None
        seconds = gpu_seconds(FOOTPRINTS[key], official, backend.passes_per_step(official), SIZES[key])
        fits = "fits" if seconds <= MAX_GPU_SECONDS else f"is refused (over {MAX_GPU_SECONDS} s): fewer frames fit"
        print(f"STG Studio: ZeroGPU size {SIZES[key]} for {backend.model} "
              f"({needed_bytes(FOOTPRINTS[key], official) / 1e9:.3g} GB); its default comparison takes about "
              f"{seconds:.0f} s and {fits}.", flush=True)
    runner(SIZES[key])  # decorated before the app launches, as ZeroGPU expects


def default_comparison(backend: Backend) -> Request:
    """The official comparison at the preset's defaults: what a model must fit to be served (an image-to-video model
    gets a blank image of the default size, and a model that takes no text no prompt: neither changes the work)."""
    from PIL import Image

    from stg import inputs

    size = (backend.preset.defaults["width"], backend.preset.defaults["height"])
    image = Image.new("RGB", size) if backend.image_to_video else None
    prompt = "a" if backend.family.takes_prompt else ""
    return inputs.task(backend, inputs.COMMANDS["compare"], {"prompt": prompt, "image": image}).request


def needed_bytes(footprint: Footprint, request: Request) -> int:
    """GPU memory a request needs: every weight, and one batch row's activations (the engine splits a step's rows
    into smaller forwards until they fit, down to one row)."""
    return footprint.weight_bytes + footprint.row_bytes(request.num_frames, request.height, request.width) \
        + RESERVE_BYTES


def gpu_size(footprint: Footprint, request: Request, model: str) -> str:
    """The smallest ZeroGPU size whose memory holds this model's weights and the request's activations."""
    need = needed_bytes(footprint, request)
    for size, capacity in GPU_BYTES.items():
        if need <= capacity:
            return size
    weights = footprint.weight_bytes / 1e9
    raise ValueError(
        f"model: {model} needs about {need / 1e9:.3g} GB of GPU memory ({weights:.3g} GB of weights), more than "
        f"ZeroGPU's largest size holds ({GPU_BYTES['xlarge'] / 1e9:.3g} GB); --fp8 stores the transformers' weights "
        f"in half the memory (--offload, which moves weights from the CPU on every call, does not help on ZeroGPU)")


def gpu_seconds(footprint: Footprint, request: Request, passes_per_step: float, size: str) -> float:
    """Expected seconds of a request on a ZeroGPU size: the FLOPs of the passes the engine plans, at the card's
    dense bf16 throughput times EFFICIENCY, plus START_SECONDS."""
    flops = footprint.pass_flops(request.num_frames, request.height, request.width) * passes_per_step * request.steps
    return START_SECONDS + flops / (CARD_FLOPS * CARD_SHARE[size] * EFFICIENCY)


def job_seconds(job: GpuJob) -> float:
    """Expected seconds of a job on its backend's size."""
    backend = BACKENDS[job.backend]
    return gpu_seconds(FOOTPRINTS[job.backend], job.request, backend.passes_per_step(job.request), SIZES[job.backend])


def duration(job: GpuJob) -> int:
    """ZeroGPU seconds to ask for: the expected seconds (a request over MAX_GPU_SECONDS never gets here)."""
    return math.ceil(min(MAX_GPU_SECONDS, job_seconds(job)))


def check_duration(job: GpuJob) -> None:
    """Refuse a request whose expected time is over MAX_GPU_SECONDS before it starts, naming the most frames that
    fit at its size and steps."""
    if job_seconds(job) <= MAX_GPU_SECONDS:
        return
    backend, request = BACKENDS[job.backend], job.request
    low, _, step, _ = backend.preset.bounds("num_frames")
    fitting = [frames for frames in range(request.num_frames - step, low - 1, -step)
               if job_seconds(replace(job, request=replace(request, num_frames=frames))) <= MAX_GPU_SECONDS]
    seconds = f"about {job_seconds(job):.0f} s of GPU time, more than the {MAX_GPU_SECONDS} s one request may take"
    hint = (f"at most {fitting[0]} frames fit at {request.width}x{request.height} and {request.steps} steps"
            if fitting else "lower the steps, the height or the width")
    raise gr.Error(f"This request needs {seconds}: {hint}.", print_exception=False)


def runner(size: str):
    """The GPU function for one ZeroGPU size (the size is fixed when a function is decorated)."""
    if size not in RUNNERS:
        def run(job: GpuJob) -> list[Video]:
            return run_on_gpu(job)

        RUNNERS[size] = gpu(duration=duration, size=size)(run)
    return RUNNERS[size]


def run_on_gpu(job: GpuJob) -> list[Video]:
    """Denoise one request (picklable in and out, as ZeroGPU needs); only gr.Error leaves it. Videos in panel order."""
    control = CONTROLS.get(job.token) or RunControl(None)
    record = RunRecord(job.token)

    def on_step(step: int, total: int) -> None:
        record.step, record.steps, record.at = step, total, time.monotonic()
        for hook in list(HOOKS):
            hook.step(step, total)
        if control.stopped():
            raise Cancelled()
        control.report(step, total, record.started)

    with _GPU_LOCK:
        record.started = time.monotonic()
        try:
            if control.stopped():
                raise Cancelled()
            return BACKENDS[job.backend].render(job.request, on_step)
        except Exception as error:
            record.status, message = _outcome(error, job.request)
            if message is None:
                raise
            raise gr.Error(message, print_exception=False) from None
        finally:
            record.released = time.monotonic()
            record.seconds = record.released - record.started
            for hook in list(HOOKS):
                hook.ended(record)


def _outcome(error: Exception, request: Request) -> tuple[str, str | None]:
    """A run's status after this error, and what the user is told (None: a bug, raised as it is)."""
    if isinstance(error, Cancelled):
        return "stopped", "Stopped."
    if isinstance(error, ValueError):
        return "refused", str(error)
    if isinstance(error, RuntimeError) and "out of memory" in str(error).lower():  # torch.OutOfMemoryError too
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return "out of memory", (f"Out of GPU memory at {request.num_frames} frames of {request.width}x"
                                 f"{request.height}: lower num_frames first, then height and width, and try again.")
    return "failed", None


def submit(backend: Backend, request: Request, progress=None, session: str | None = None) -> list[Video]:
    """Run a checked request on the GPU; Stop in this browser session, or a client's cancel, ends it within a step.
    A failure that is not the user's doing is one line for the user, the trace in the server log."""
    token = uuid.uuid4().hex
    progress = None if ON_ZERO_GPU else progress
    CONTROLS[token] = RunControl(session, task=_current_task(), progress=progress)
    try:
        if progress is not None:
            progress((0, request.total_steps), desc="Waiting for the GPU", unit="steps")
        job = GpuJob(id(backend), token, request)
        if ON_ZERO_GPU:
            check_duration(job)
        videos = runner(SIZES[job.backend])(job)
    except gr.Error:
        raise
    except Exception as error:
        traceback.print_exc()
        raise gr.Error(f"Generation failed ({type(error).__name__}); the server log has the details. "
                       "Please try again.", print_exception=False) from None
    finally:
        CONTROLS.pop(token, None)
    if progress is not None:
        progress(1.0, desc="Writing videos")
    return videos


def stop_session(session: str | None) -> list[RunControl]:
    """Stop this browser session's running requests after their current step; returns their controls."""
    stopped = [control for control in list(CONTROLS.values()) if session is not None and control.session == session]
    for control in stopped:
        control.stop.set()
    return stopped


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
