"""Line plots drawn with Pillow (no plotting library): one small panel per figure, a line per series, the scale on
the x axis, and where given each point's 95% interval as a bar."""

from __future__ import annotations

import math
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

COLOURS = {"CFG": (31, 119, 180), "STG": (255, 127, 14), "CFG + STG": (44, 160, 44)}
PANEL = (300, 190)  # px of one figure's panel
MARGIN = (46, 22, 12, 30)  # left, top, right, bottom inside a panel
COLUMNS = 3
LEGEND = 26


def draw(points: Sequence[dict], figures: Sequence[str], title: str = "") -> Image.Image:
    """points: dicts with series, scale, and per figure its value (`figure`) and, if known, its interval
    (`figure_low`, `figure_high`). One panel per figure; series in COLOURS order."""
    rows = max(1, math.ceil(len(figures) / COLUMNS))
    width, height = PANEL[0] * min(COLUMNS, max(len(figures), 1)), PANEL[1] * rows + LEGEND + (20 if title else 0)
    image = Image.new("RGB", (width, height), "white")
    canvas = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    top = 0
    if title:
        canvas.text((8, 4), title, fill="black", font=font)
        top = 20
    for index, name in enumerate(figures):
        left, upper = PANEL[0] * (index % COLUMNS), top + PANEL[1] * (index // COLUMNS)
        _panel(canvas, font, (left, upper), name, points)
    x = 8
    for series, colour in COLOURS.items():
        if any(p["series"] == series for p in points):
            canvas.line((x, height - 13, x + 18, height - 13), fill=colour, width=3)
            label = {"CFG": "CFG alone (x: w)", "STG": "STG alone, w 1 (x: s)"}.get(series, f"{series} (x: s)")
            canvas.text((x + 22, height - 19), label, fill="black", font=font)
            x += 34 + int(canvas.textlength(label, font=font))
    return image


def _panel(canvas: ImageDraw.ImageDraw, font, origin: tuple[int, int], name: str, points: Sequence[dict]) -> None:
    left, upper = origin
    x0, y0 = left + MARGIN[0], upper + MARGIN[1]
    x1, y1 = left + PANEL[0] - MARGIN[2], upper + PANEL[1] - MARGIN[3]
    canvas.text((x0, upper + 4), name, fill="black", font=font)
    canvas.rectangle((x0, y0, x1, y1), outline=(160, 160, 160))
    shown = [p for p in points if _finite(p.get(name))]
    if not shown:
        canvas.text((x0 + 8, y0 + 8), "not measured", fill=(120, 120, 120), font=font)
        return
    values = [p[name] for p in shown] + [p.get(f"{name}_{end}") for p in shown for end in ("low", "high")]
    low, high = min(v for v in values if _finite(v)), max(v for v in values if _finite(v))
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    scales = [p["scale"] for p in shown]
    left_scale, right_scale = min(0.0, min(scales)), max(scales)
    right_scale = right_scale if right_scale > left_scale else left_scale + 1

    def at(scale: float, value: float) -> tuple[float, float]:
        return (x0 + (scale - left_scale) / (right_scale - left_scale) * (x1 - x0 - 8) + 4,
                y1 - (value - low) / (high - low) * (y1 - y0))

    for value in (low + pad, high - pad):  # y labels at the data's ends
        _, y = at(left_scale, value)
        canvas.text((left + 2, y - 5), f"{value:.3g}", fill=(90, 90, 90), font=font)
    for scale in sorted(set(scales)):
        x, _ = at(scale, low)
        canvas.line((x, y1, x, y1 + 3), fill=(90, 90, 90))
        canvas.text((x - 6, y1 + 5), f"{scale:g}", fill=(90, 90, 90), font=font)
    for series, colour in COLOURS.items():
        line = sorted((p for p in shown if p["series"] == series), key=lambda p: p["scale"])
        xy = [at(p["scale"], p[name]) for p in line]
        if len(xy) > 1:
            canvas.line(xy, fill=colour, width=2)
        for p, (x, y) in zip(line, xy):
            lo, hi = p.get(f"{name}_low"), p.get(f"{name}_high")
            if _finite(lo) and _finite(hi):
                canvas.line((x, at(0, lo)[1], x, at(0, hi)[1]), fill=colour, width=1)
            canvas.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
