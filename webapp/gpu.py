"""The GPU runner: one request at a time on the GPU, stoppable within a step, with its progress shown.

On a ZeroGPU Space only `run_on_gpu` holds the GPU, in a forked worker: its argument and result are pickled, so
it gets a small `GpuJob` and finds the loaded backend and the request's controls by key. Whatever watches the
runs (a log, the tests' fault injection) installs a `RunHook` in HOOKS.
"""

from __future__ import annotations

try:  # Imported before torch: on a ZeroGPU Space it patches CUDA start-up.
    import spaces
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    spaces = None

import asyncio
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field

import anyio.from_thread
import gradio as gr
import torch
from gradio.context import LocalContext

from stg import Backend, Cancelled, Video
from stg.backend import Request

ON_ZERO_GPU = bool(spaces is not None and spaces.config.Config.zero_gpu)
gpu = spaces.GPU if spaces is not None else (lambda **_: (lambda fn: fn))
MAX_GPU_SECONDS = 240
# ZeroGPU seconds per transformer pass x step x frame x pixel: about 50 s for the official comparison on an H200
# (40 steps of 4.32 passes, 121 frames of 768x512), to which 20 s are added for the start.
SECONDS_PER_PASS_PIXEL = 6.25e-9


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


def register(backend: Backend) -> None:
    """Make a backend known to the GPU worker (before it forks)."""
    BACKENDS[id(backend)] = backend


def duration(job: GpuJob) -> int:
    """ZeroGPU seconds to reserve: transformer passes x steps x frames x pixels, as the engine counts passes."""
    request = job.request
    work = request.steps * request.num_frames * request.height * request.width
    passes = BACKENDS[job.backend].passes_per_step(request)
    return int(min(MAX_GPU_SECONDS, 20 + SECONDS_PER_PASS_PIXEL * work * passes))


@gpu(duration=duration)
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
        videos = run_on_gpu(GpuJob(id(backend), token, request))
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
