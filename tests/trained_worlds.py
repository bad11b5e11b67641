"""Helpers shared by the tests of the grammar-trained models (shapes, lab): degrading a rendered clip, and running
a training script into a folder, reading its log and checking that a resumed run repeats a straight one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.torch import load_file


def blur(clip: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable blur of each frame, edges extended (no dark border)."""
    out = clip.astype(np.float32)
    half = len(kernel) // 2
    for axis in (1, 2):
        padded = np.pad(out, [(half, half) if a == axis else (0, 0) for a in range(4)], mode="edge")
        out = sum(w * np.take(padded, range(i, i + out.shape[axis]), axis=axis) for i, w in enumerate(kernel))
    return out


def train(module, out: Path, steps: int, args: list[str]) -> Path:
    """Run a training script's main into `out` for `steps` transformer steps (resuming where `out` has a checkpoint);
    the script sets torch's thread count (--threads): the tests after it get theirs back."""
    import torch

    threads = torch.get_num_threads()
    try:
        assert module.main(["--out", str(out), "--steps", str(steps), *args]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def logged(folder: Path, stage: str, field: str = "loss") -> np.ndarray:
    """One logged field (the loss, or the learning rate: "lr") of each step of one stage of the run that wrote
    `folder`."""
    log = Path(f"{folder}.work") / "log.jsonl"
    return np.array([e[field] for e in map(json.loads, log.read_text().splitlines()) if e["stage"] == stage])


def assert_resuming_repeats(module, straight: Path, folder: Path, steps: int, args: list[str]) -> list[dict]:
    """Train `folder` to half of `steps`, then, started again, on to `steps`: every weight and every loss equals the
    straight run's (`straight`, trained to `steps` at once). Returns the commands its record lists."""
    train(module, folder, steps // 2, args)
    train(module, folder, steps, args)  # same folder: picks up the checkpoint at half way
    for part in ("transformer", "text_encoder", "vae"):
        name = "diffusion_pytorch_model.safetensors" if part != "text_encoder" else "model.safetensors"
        a, b = load_file(straight / part / name), load_file(folder / part / name)
        assert a.keys() == b.keys(), part
        for key in a:
            assert (a[key] == b[key]).all(), f"{part}.{key}"
    np.testing.assert_array_equal(logged(straight, "transformer"), logged(folder, "transformer"))
    return json.loads((folder / "training.json").read_text())["commands"]
