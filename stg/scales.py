"""The scale sweep: CFG alone across its scale w, STG alone (w 1) across its scale s, and CFG + STG at a request's
settings, all from one prompt's initial noise, denoised together in batched runs as a block sweep is.

Each point of the sweep is a series (CFG, STG, or CFG + STG), the scale on the x axis (w for CFG, s for STG and
CFG + STG) and the panel's guidance. Panels that are the same guidance (CFG at w 1 and STG at s 0) are rendered once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from .backend import Backend, Request, Video
from .guidance import Guidance

CFG_SCALES = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
STG_SCALES = (0.0, 0.5, 1.0, 2.0, 3.0)
APP_CFG_SCALES = (1.0, 2.0, 4.0, 8.0)  # the page's sweep: a few of each, for a quick look
APP_STG_SCALES = (0.0, 1.0, 2.0, 3.0)
SERIES = ("CFG", "STG", "CFG + STG")


@dataclass(frozen=True)
class Point:
    series: str
    scale: float
    guidance: Guidance


def points(cfg: Guidance, with_stg: Guidance, cfg_scales: Sequence[float] = CFG_SCALES,
           stg_scales: Sequence[float] = STG_SCALES) -> list[Point]:
    """CFG at each w (the CFG panel's other settings), STG alone at each s (the CFG + STG panel's settings with w 1;
    s 0 is CFG off too, the unguided panel), and the CFG + STG panel itself, at its s."""
    return ([Point("CFG", w, replace(cfg, cfg_scale=w)) for w in cfg_scales]
            + [Point("STG", s, replace(with_stg, cfg_scale=1.0, stg_scale=s) if s else replace(cfg, cfg_scale=1.0))
               for s in stg_scales]
            + [Point("CFG + STG", with_stg.stg_scale, with_stg)])


def request(base: Request, sweep: Sequence[Point], panels_per_run: int | None) -> Request:
    """The request for a sweep: a checked request's prompt, seed and sizes, one panel per distinct guidance."""
    return replace(base, panels=tuple(dict.fromkeys(p.guidance for p in sweep)), panels_per_run=panels_per_run)


def videos_of(sweep: Sequence[Point], rendered: Request, videos: Sequence[Video]) -> list[Video]:
    """Each point's video, from the videos of `request(...)` in its panel order."""
    by_guidance = dict(zip(rendered.panels, videos))
    return [by_guidance[p.guidance] for p in sweep]


def run(backend: Backend, base: Request, sweep: Sequence[Point], panels_per_run: int | None = None,
        callback=None) -> list[Video]:
    """Render a sweep on this backend: the video of each point."""
    rendered = request(base, sweep, panels_per_run)
    return videos_of(sweep, rendered, backend.render(rendered, callback))
