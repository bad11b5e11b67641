"""STG Studio: one prompt and seed, a CFG video beside a CFG + STG video, in the browser and over HTTP.

    python app.py                  # LTX-Video 2B from the hub on a GPU (falls back to the offline lab model)
    python app.py --model lab      # offline, CPU: a small model trained on a synthetic world with a ground truth
    STG_MODEL=KEY|ID|PATH python app.py

This file is what a Space runs: it reads the arguments, loads the one model, builds the page (webapp/) and
launches it. The page and the API (`/compare`, `/generate`, `/sweep`) only wire Gradio components to `stg.Backend`.
"""

from __future__ import annotations

from webapp import build_demo, serve  # first: on a ZeroGPU Space its GPU runner imports `spaces` before torch
from webapp.gpu import ON_ZERO_GPU

import argparse
import os
import sys

import torch

import stg
from stg.quiet import cannot_load, quiet_libraries

DEFAULT_MODEL = "ltx-video"
FALLBACK_MODEL = "lab"  # runs anywhere, offline: what the app shows when the default model cannot run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="STG Studio", allow_abbrev=False)
    parser.add_argument("--model", default=None, help=f"preset key ({DEFAULT_MODEL}, {FALLBACK_MODEL}, ...), hub id or "
                        f"local folder; default: $STG_MODEL, else {DEFAULT_MODEL}")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--share", action="store_true", help="create a public share link")
    parser.add_argument("--offload", action="store_true", help="CPU offload of idle components (less GPU memory)")
    parser.add_argument("--fp8", action="store_true", help="transformer weights in float8 (half the memory of bf16)")
    args, _ = parser.parse_known_args(argv)  # a Space or a test runner may add arguments of its own
    return args


def load_backend(model: str | None = None, offload: bool = False, fp8: bool = False) -> tuple[stg.Backend, str]:
    """The one backend, and why the fallback model stands in for the default one ("" if it does not). A model that
    was asked for and cannot load ends the app with one line saying why."""
    device = "cuda" if ON_ZERO_GPU else None  # ZeroGPU: weights go to cuda at import, the GPU comes per call
    if model:
        try:
            return stg.Backend.load(model, device=device, offload=offload, fp8=fp8), ""
        except ValueError as error:  # an unknown preset, folder or pipeline
            raise SystemExit(f"STG Studio: {error}") from None
        except Exception as error:  # the hub out of reach, a folder without weights, not enough memory, ...
            offline = f"--model {FALLBACK_MODEL} runs offline"
            raise SystemExit(f"STG Studio: {cannot_load(model, error)}; {offline}") from None
    if not (ON_ZERO_GPU or torch.cuda.is_available()):
        reason = f"no GPU found, so {DEFAULT_MODEL} is not loaded"
    else:
        try:
            return stg.Backend.load(DEFAULT_MODEL, device=device, offload=offload, fp8=fp8), ""
        except Exception as error:
            reason = cannot_load(DEFAULT_MODEL, error)
    backend = stg.Backend.load(FALLBACK_MODEL)
    print(f"STG Studio: {reason}; using the offline {FALLBACK_MODEL} model ({backend.preset.title}).", flush=True)
    return backend, reason


ARGS = parse_args(sys.argv[1:])
quiet_libraries()
BACKEND, FALLBACK_REASON = load_backend(ARGS.model or os.environ.get("STG_MODEL") or None, ARGS.offload, ARGS.fp8)
demo = build_demo(BACKEND, FALLBACK_REASON)

if __name__ == "__main__":
    serve(demo, server_port=ARGS.port, share=ARGS.share or None)
