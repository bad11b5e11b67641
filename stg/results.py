"""What a run leaves behind: captions, the settings document with figures, and the files of a comparison or sweep.

Shared by the app and the command line so both name panels and record settings the same way.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from . import metrics, video
from .backend import Video
from .guidance import Guidance


def label(name: str, g: Guidance) -> str:
    """A caption naming a panel's settings, e.g. 'CFG + STG: w 3, s 1, stg-a, block 19, rescale 0.7'."""
    text = f"{name}: w {g.cfg_scale:g}"
    if g.uses_stg:
        blocks = ", ".join(map(str, g.stg_blocks))
        text += f", s {g.stg_scale:g}, {g.stg_mode}, block{'s' if len(g.stg_blocks) > 1 else ''} {blocks}"
        if tuple(g.window) != (0.0, 1.0):
            text += f", steps {g.window[0]:g}-{g.window[1]:g}"
    if g.rescale:
        text += f", rescale {g.rescale:g}"
    return text


def default_candidates(depth: int, count: int = 8) -> list[int]:
    """About `count` blocks spread evenly over the depth, first and last included."""
    count = min(count, depth)
    return sorted({round(i * (depth - 1) / max(count - 1, 1)) for i in range(count)})


def settings_document(videos: Sequence[Video], labels: Sequence[str], fps: float) -> dict:
    """One JSON document for panels of one run: shared settings once, then per panel guidance and figures."""
    document = {k: v for k, v in videos[0].settings.items() if k != "guidance"}
    document["fps"] = fps
    document["panels"] = [
        {
            "label": text,
            "guidance": v.settings["guidance"],
            "figures": metrics.figures(v.frames),
            "frames_sha256": hashlib.sha256(v.frames.tobytes()).hexdigest(),
        }
        for v, text in zip(videos, labels)
    ]
    return document


def comparison_labels(left: Guidance, right: Guidance) -> list[str]:
    return [label("CFG", left), label("CFG + STG", right)]


def write_comparison(left: Video, right: Video, folder: str | Path, fps: float | None = None) -> dict[str, Path]:
    """cfg.mp4, stg.mp4, side_by_side.mp4 (captioned halves) and settings.json (with figures) in folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fps = fps or left.fps
    labels = comparison_labels(_guidance(left), _guidance(right))
    paths = {
        "cfg": video.write_mp4(left.frames, folder / "cfg.mp4", fps),
        "stg": video.write_mp4(right.frames, folder / "stg.mp4", fps),
        "side_by_side": video.write_mp4(video.side_by_side([left.frames, right.frames], labels), folder / "side_by_side.mp4", fps),
        "settings": folder / "settings.json",
    }
    paths["settings"].write_text(json.dumps(settings_document([left, right], labels, fps), indent=2))
    return paths


def sweep_labels(reference: Guidance, candidates: Sequence[Guidance]) -> list[str]:
    return [label("CFG", reference)] + [f"block {c.stg_blocks[0]}" for c in candidates]


def sweep_grid(reference: Video, candidates: Sequence[Video]) -> np.ndarray:
    """One labelled grid: the CFG reference first, then one cell per candidate block."""
    videos = [reference, *candidates]
    return video.grid([v.frames for v in videos], sweep_labels(_guidance(reference), [_guidance(c) for c in candidates]))


def sweep_table(document: dict) -> list[dict]:
    """Figures per panel of a sweep's settings document: the reference row (block None), then one per block."""
    rows = []
    for index, panel in enumerate(document["panels"]):
        block = None if index == 0 else panel["guidance"]["stg_blocks"][0]
        rows.append({"block": block, "label": "CFG" if block is None else f"block {block}", **panel["figures"]})
    return rows


def write_sweep(reference: Video, candidates: Sequence[Video], folder: str | Path, fps: float | None = None) -> dict[str, Path]:
    """grid.mp4, figures.csv and settings.json in folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fps = fps or reference.fps
    labels = sweep_labels(_guidance(reference), [_guidance(c) for c in candidates])
    document = settings_document([reference, *candidates], labels, fps)
    paths = {"grid": video.write_mp4(sweep_grid(reference, candidates), folder / "grid.mp4", fps),
             "figures": write_csv(sweep_table(document), folder / "figures.csv"), "settings": folder / "settings.json"}
    paths["settings"].write_text(json.dumps(document, indent=2))
    return paths


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def _guidance(v: Video) -> Guidance:
    g = v.settings["guidance"]
    return Guidance(g["cfg_scale"], g["stg_scale"], g["stg_mode"], g["stg_blocks"], g["rescale"], tuple(g["window"]))
