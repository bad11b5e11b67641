"""What a run leaves behind, composed once: the videos to show (with their sound, for models that make it), the
settings document with the figures of every panel, and a sweep's table of figures. The app writes them under unique
names, the command line under fixed ones.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import metrics, video
from .backend import Video
from .guidance import Guidance
from .inputs import Task


def label(name: str, g: Guidance) -> str:
    """A caption naming a panel's settings, e.g. 'CFG + STG: w 3, s 1, stg-a, block 19, rescale 0.7', and the
    model's own extras (a second expert's w, modality guidance, the sound's scales) where set."""
    first = "" if g.min_guidance_scale is None else f"{g.min_guidance_scale:g} to "
    text = f"{name}: w {first}{g.cfg_scale:g}" + ("" if g.cfg_scale_2 is None else f" then {g.cfg_scale_2:g}")
    if g.uses_stg:
        if (g.stg_scale or g.audio_stg_scale) and g.stg_blocks:
            blocks = ", ".join(map(str, g.stg_blocks))
            text += f", s {g.stg_scale:g}, {g.stg_mode}, block{'s' if len(g.stg_blocks) > 1 else ''} {blocks}"
        if g.uses_temporal_stg:
            blocks = ", ".join(map(str, g.temporal_stg_blocks))
            plural = "s" if len(g.temporal_stg_blocks) > 1 else ""
            mode = "" if (g.stg_scale or g.audio_stg_scale) and g.stg_blocks else f", {g.stg_mode}"
            text += f", temporal s {g.temporal_stg_scale:g}{mode}, layer{plural} {blocks}"
        if tuple(g.window) != (0.0, 1.0):
            text += f", steps {g.window[0]:g}-{g.window[1]:g}"
    if g.rescale:
        text += f", rescale {g.rescale:g}"
    if g.modality_scale != 1:
        text += f", modality {g.modality_scale:g}"
    sound = [f"{short} {value:g}" for short, value in (("w", g.audio_cfg_scale), ("s", g.audio_stg_scale),
             ("modality", g.audio_modality_scale), ("rescale", g.audio_rescale)) if value is not None]
    return text + (f", sound {' '.join(sound)}" if sound else "")


@dataclass(frozen=True)
class Clip:
    """Frames and the sound tracks that go with them (none for a silent model), as one MP4 file holds them."""

    frames: np.ndarray
    tracks: tuple[video.Track, ...] = ()


def clip(videos: Sequence[Video], titles: Sequence[str], frames: np.ndarray | None = None) -> Clip:
    """The frames (the first video's unless given) with one titled track per video that has sound, in order."""
    tracks = tuple(video.Track(v.audio, v.sample_rate, t) for v, t in zip(videos, titles) if v.audio is not None)
    return Clip(videos[0].frames if frames is None else frames, tracks)


@dataclass(frozen=True)
class Results:
    """One run's outputs by name, in the order they are returned: frames (an MP4), rows (a CSV), the settings
    document (JSON). `names` are the panels' short names, in panel order."""

    parts: dict[str, np.ndarray | list | dict]
    names: tuple[str, ...]
    fps: float
    seed: int

    @property
    def document(self) -> dict:
        return self.parts["settings"]

    def figures(self) -> dict[str, dict[str, float]]:
        """Each panel's figures by its short name."""
        return {name: panel["figures"] for name, panel in zip(self.names, self.document["panels"])}


# -- layouts: each command's captions, short names and parts ---------------------------------------
class Comparison:
    def labels(self, panels):
        return [label("CFG", panels[0]), label("CFG + STG", panels[1])]

    def names(self, panels):
        return ["cfg", "stg"]

    def parts(self, videos, labels, document):
        """Each panel with its own sound; the side-by-side file with both, CFG first."""
        both = video.side_by_side([v.frames for v in videos], labels)
        return {"cfg": clip(videos[:1], labels[:1]), "stg": clip(videos[1:], labels[1:]),
                "side_by_side": clip(videos, labels, both)}


class Single:
    def labels(self, panels):
        return [label("CFG + STG" if panels[0].uses_stg else "CFG", panels[0])]

    def names(self, panels):
        return ["stg" if panels[0].uses_stg else "cfg"]

    def parts(self, videos, labels, document):
        return {"video": clip(videos, labels)}


def candidate(stg_blocks, temporal_stg_blocks) -> tuple[int, str]:
    """A sweep candidate's block and name: "block k", or on a model with factorized attention "temporal k" (its
    temporal layer alone) or "both k"."""
    if not temporal_stg_blocks:
        return stg_blocks[0], f"block {stg_blocks[0]}"
    return temporal_stg_blocks[0], f"{'both' if stg_blocks else 'temporal'} {temporal_stg_blocks[0]}"


class Sweep:
    def labels(self, panels):
        return [label("CFG", panels[0])] + [candidate(g.stg_blocks, g.temporal_stg_blocks)[1] for g in panels[1:]]

    def names(self, panels):
        return ["cfg"] + [candidate(g.stg_blocks, g.temporal_stg_blocks)[1] for g in panels[1:]]

    def parts(self, videos, labels, document):
        return {"grid": video.grid([v.frames for v in videos], labels), "figures": sweep_table(document)}


LAYOUTS = {"compare": Comparison(), "generate": Single(), "sweep": Sweep()}
# Panels run batched; a matrix product rounds a little differently at another batch size, so the same settings alone
# (/generate) and beside another panel (/compare) give frames equal within a tolerance, not bit for bit (tested in fp32).
BATCHING = ("frames_sha256 identifies these frames, made in this batch of panels: the same settings in another batch "
            "(/generate against /compare, or another sweep) give frames equal within 1/255 per value in float32, "
            "not always bit for bit; in bfloat16 more")


def compose(task: Task, videos: Sequence[Video]) -> Results:
    """The outputs of one task's videos (in panel order), and its settings document."""
    layout, panels = LAYOUTS[task.command.name], task.request.panels
    labels = layout.labels(panels)
    document = settings_document(videos, labels, task.fps, task.figures)
    parts = {**layout.parts(videos, labels, document), "settings": document}
    return Results(parts, tuple(layout.names(panels)), task.fps, task.request.seed)


def settings_document(videos: Sequence[Video], labels: Sequence[str], fps: float, figures=("video",)) -> dict:
    """One JSON document for panels of one run: shared settings once, then per panel guidance and figures."""
    document = {k: v for k, v in videos[0].settings.items() if k != "guidance"}
    document["fps"] = fps
    document["batching"] = BATCHING
    document["panels"] = [
        {
            "label": text,
            "guidance": v.settings["guidance"],
            "figures": metrics.measure(v.frames, v.settings, figures),
            "frames_sha256": hashlib.sha256(v.frames.tobytes()).hexdigest(),
        }
        for v, text in zip(videos, labels)
    ]
    return document


def sweep_table(document: dict) -> list[dict]:
    """Figures per panel of a sweep's settings document: the reference row (block None), then one per block."""
    rows = []
    for index, panel in enumerate(document["panels"]):
        guidance = panel["guidance"]
        block, name = (None, "CFG") if index == 0 else \
            candidate(guidance["stg_blocks"], guidance["temporal_stg_blocks"])
        rows.append({"block": block, "label": name, **panel["figures"]})
    return rows


# -- writing ---------------------------------------------------------------------------------------
def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def _write_json(document: dict, path: Path) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


# What each kind of part becomes: its file ending and its writer.
WRITERS = {
    Clip: (".mp4", lambda part, path, fps: video.write_mp4(part.frames, path, fps, part.tracks)),
    np.ndarray: (".mp4", lambda frames, path, fps: video.write_mp4(frames, path, fps)),
    list: (".csv", lambda rows, path, fps: write_csv(rows, path)),
    dict: (".json", lambda document, path, fps: _write_json(document, path)),
}


def write(results: Results, path_for: Callable[[str, str], Path]) -> dict[str, Path]:
    """Every part in a file of its own; path_for(name, ending) says where."""
    paths = {}
    for name, part in results.parts.items():
        ending, writer = WRITERS[type(part)]
        paths[name] = writer(part, path_for(name, ending), results.fps)
    return paths


def in_folder(folder: str | Path) -> Callable[[str, str], Path]:
    """Fixed names in one folder (made if missing): cfg.mp4, settings.json, ..."""
    folder = Path(folder)

    def path_for(name: str, ending: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}{ending}"

    return path_for
