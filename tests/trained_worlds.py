"""Helpers shared by the tests of the grammar-trained models (shapes, lab): degrading a rendered clip, and running
a training script into a folder and reading its log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def blur(clip: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable blur of each frame, edges extended (no dark border)."""
    out = clip.astype(np.float32)
    half = len(kernel) // 2
    for axis in (1, 2):
        padded = np.pad(out, [(half, half) if a == axis else (0, 0) for a in range(4)], mode="edge")
        out = sum(w * np.take(padded, range(i, i + out.shape[axis]), axis=axis) for i, w in enumerate(kernel))
    return out


def train(module, out: Path, steps: int, args: list[str]) -> Path:
    """Run a training script's main into `out` for `steps` transformer steps (resuming where `out` has a checkpoint)."""
    assert module.main(["--out", str(out), "--steps", str(steps), *args]) == 0
    return out


def losses(folder: Path, stage: str) -> np.ndarray:
    """The logged losses of one stage of the run that wrote `folder`."""
    log = Path(f"{folder}.work") / "log.jsonl"
    return np.array([e["loss"] for e in map(json.loads, log.read_text().splitlines()) if e["stage"] == stage])
