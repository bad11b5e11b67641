"""How fast what moves in a clip moves, from OpenCV's dense optical flow (DIS).

The figure is the mean speed, in pixels of the input a frame, of the pixels that move: each pair of frames gets a
dense flow; a pixel counts as moving where the flow explains its change (the next frame warped back by the flow
matches the first far better than the next frame itself does) and the flow is above a noise floor; the mean weights
each such pixel by how much of its change the flow explains, squared, so that pixels with clear evidence (edges,
texture) count and those the flow merely smooths over (an object's blurred rim, flat background) barely do. A small
object over a still background thus reads its own speed, not a share of it.

Flow runs on one grey channel: the clip's main colour axis (the first principal component of its pixels), so a red
shape on a blue background, nearly equal in brightness, still has contrast. Frames are resized so their long side is
WORK_SIDE pixels (up for small clips, down for large ones), and speeds are scaled back to the input's pixels.

OpenCV facts relied on (docs.opencv.org/4.x/de/d4f/classcv_1_1DISOpticalFlow.html and
modules/video/src/dis_flow.cpp): `cv2.DISOpticalFlow_create(preset)` makes the Dense Inverse Search flow;
PRESET_MEDIUM computes down to half resolution (`setFinestScale(0)`: full) with 8-px patches at stride 3 and
variational refinement; `calc(I0,
I1, None)` takes two 8-bit single-channel images and returns float32 [h, w, 2] holding (dx, dy) such that
I0(y, x) ~ I1(y + dy, x + dx), which `cv2.remap` with map x + dx, y + dy samples.
"""

from __future__ import annotations

import cv2
import numpy as np

WORK_SIDE = 128  # long side (px) the flow is computed at for clips up to this size; larger clips: BIG_SIDE
BIG_SIDE = 256  # long side for clips larger than WORK_SIDE: enough detail for motion of a few pixels
EXPLAINED = 0.2  # a pixel moves where the flow leaves at most this share of its frame-to-frame change
FLOOR = 0.1  # px a frame at the working size: slower flow is noise
WINDOW = 5  # px at the working size: the change and the remaining error are averaged over this square
SAMPLE = 20000  # pixels of the clip sampled for its main colour axis


def speed(frames: np.ndarray) -> float:
    """Mean speed of what moves, px a frame of the input; 0 for a still clip or a single frame."""
    frames = np.asarray(frames)
    if len(frames) < 2:
        return 0.0
    grey, scale = _working(frames)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    if scale <= 1:  # not enlarged: flow at full resolution, for sub-pixel motion
        dis.setFinestScale(0)
    speeds = [_pair_speed(dis, first, second) for first, second in zip(grey[:-1], grey[1:])]
    return float(np.mean(speeds)) / scale


def _pair_speed(dis, first: np.ndarray, second: np.ndarray) -> float:
    flow = dis.calc(first, second, None)
    height, width = first.shape
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    warped = cv2.remap(second.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    base = first.astype(np.float32)
    change = cv2.blur(np.abs(second - base), (WINDOW, WINDOW))
    left = cv2.blur(np.abs(warped - base), (WINDOW, WINDOW))
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    moving = (left < EXPLAINED * change) & (magnitude > FLOOR)
    weight = np.where(moving, (change - left) ** 2, 0.0)
    total = weight.sum()
    return float((magnitude * weight).sum() / total) if total > 0 else 0.0


def _working(frames: np.ndarray) -> tuple[list[np.ndarray], float]:
    """The clip on its main colour axis, 8-bit, resized to the working size; and the resize factor."""
    grey = _main_axis(frames)
    height, width = grey.shape[1:]
    side = WORK_SIDE if max(height, width) <= WORK_SIDE else BIG_SIDE
    scale = side / max(height, width)
    size = (max(round(width * scale), 1), max(round(height * scale), 1))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = [cv2.resize(frame, size, interpolation=interpolation) for frame in grey]
    return [np.clip(frame, 0, 255).round().astype(np.uint8) for frame in resized], size[0] / width


def _main_axis(frames: np.ndarray) -> np.ndarray:
    """[frames, h, w] float32: each pixel's position along the clip's first principal colour axis, shifted to start
    at 0 and scaled down (never up) to fit 0..255, so noise is not amplified."""
    pixels = frames.reshape(-1, 3)
    sample = pixels[:: max(1, len(pixels) // SAMPLE)].astype(np.float64)
    centre = sample.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((sample - centre).T) + 1e-9 * np.eye(3))
    axis = vectors[:, -1] * (1 if vectors[:, -1].sum() >= 0 else -1)
    grey = np.empty(frames.shape[:3], dtype=np.float32)
    for index, frame in enumerate(frames):  # frame by frame: a long clip's float copy stays one channel
        grey[index] = (frame.astype(np.float32) - centre.astype(np.float32)) @ axis.astype(np.float32)
    low, span = float(grey.min()), float(grey.max() - grey.min())
    return (grey - low) * min(1.0, 255.0 / max(span, 1e-6))
