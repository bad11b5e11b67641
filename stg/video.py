"""Video files and comparison layouts.

Frames are uint8 arrays shaped [frames, height, width, 3]. MP4 output is H.264,
yuv420p, even-sized and fast-start: the one combination every browser plays;
sound, where there is any, is AAC, one track per `Track`.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageDraw, ImageFont

BAND = (18, 18, 18)
INK = (255, 255, 255)
# Caption size follows the video width, within bounds that stay legible on a
# 64-px video and modest on a 1280-px one; a word too long for its line gets a
# smaller font, down to SMALLEST_FONT, and is never broken.
MIN_FONT, MAX_FONT, SMALLEST_FONT = 10, 32, 6
# Captioned layouts enlarge narrower videos (each pixel repeated, so nothing is
# blurred) to about this width, so that a caption fits in a few lines above a
# picture larger than itself, but never past ENLARGED_HEIGHT.
CAPTIONED_WIDTH, ENLARGED_HEIGHT = 256, 1024
# Most browsers show GIF frames shorter than 20 ms at 100 ms, so never go below.
MIN_GIF_MS = 20


@dataclass(frozen=True)
class Track:
    """A sound track: float waveform [channels, samples] in [-1, 1] at `rate` Hz, with the title players show."""

    samples: np.ndarray
    rate: int
    title: str = ""


def write_mp4(frames: np.ndarray, path: str | Path, fps: float, audio: Sequence[Track] = ()) -> Path:
    """Encode frames as a browser-playable MP4 (H.264, yuv420p, CRF 18, +faststart), with one AAC track per
    `audio` track (the first is the default one players play).

    Odd sizes get one edge-replicated row or column, since yuv420p needs even
    sides and cropping would lose picture.
    """
    frames = _checked(frames)
    frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    with tempfile.TemporaryDirectory() as folder:
        inputs, maps = [], ["-map", "0:v"]
        for i, track in enumerate(audio):
            samples = np.asarray(track.samples, dtype=np.float32)
            if samples.ndim != 2:
                raise ValueError(f"expected sound shaped [channels, samples], got {samples.shape}")
            raw = Path(folder) / f"{i}.f32"
            np.clip(samples, -1, 1).T.astype("<f4").tofile(raw)
            inputs += ["-f", "f32le", "-ar", str(track.rate), "-ac", str(len(samples)), "-i", str(raw)]
            # MP4 keeps a track's name as its handler name, which players list.
            maps += ["-map", f"{i + 1}:a", f"-metadata:s:a:{i}", f"handler_name={track.title}",
                     f"-disposition:a:{i}", "default" if i == 0 else "0"]
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", str(Fraction(fps).limit_denominator(1001)), "-i", "-", *inputs, *maps,
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-preset", "medium",
            *(["-c:a", "aac", "-b:a", "128k"] if audio else []), "-movflags", "+faststart", str(path),
        ]
        # A plain subprocess, because imageio-ffmpeg's writer ignores ffmpeg's exit status.
        done = subprocess.run(command, input=frames.tobytes(), capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not write {path}: {done.stderr.decode(errors='replace')}")
    return path


def caption(frames: np.ndarray, text: str) -> np.ndarray:
    """Return a copy of the video with `text` in a dark band above the picture, at the video's own size."""
    frames = _checked(frames)
    return _stack_band(frames, _band(text, frames.shape[2]))


def enlargement(videos: Sequence[np.ndarray]) -> int:
    """The whole factor captioned layouts enlarge these videos by: to about CAPTIONED_WIDTH, within ENLARGED_HEIGHT."""
    width, height = min(v.shape[2] for v in videos), max(v.shape[1] for v in videos)
    return max(1, min(math.ceil(CAPTIONED_WIDTH / width), ENLARGED_HEIGHT // height))


def side_by_side(videos: Sequence[np.ndarray], captions: Sequence[str], gap: int = 4) -> np.ndarray:
    """Captioned videos left to right, top-aligned, with black gaps between them (small ones enlarged, see
    `enlargement`)."""
    cells = _labelled(videos, captions)
    height = max(cell.shape[1] for cell in cells)
    return _join([_pad(cell, height, cell.shape[2]) for cell in cells], axis=2, gap=gap)


def grid(videos: Sequence[np.ndarray], labels: Sequence[str], columns: int | None = None, gap: int = 4) -> np.ndarray:
    """Captioned videos in rows of `columns` (default ceil(sqrt(n))), small ones enlarged; empty cells are black."""
    cells = _labelled(videos, labels)
    columns = columns or math.ceil(math.sqrt(len(cells)))
    height = max(cell.shape[1] for cell in cells)
    width = max(cell.shape[2] for cell in cells)
    cells = [_pad(cell, height, width) for cell in cells]
    cells += [np.zeros_like(cells[0])] * (-len(cells) % columns)
    rows = [_join(cells[start : start + columns], axis=2, gap=gap) for start in range(0, len(cells), columns)]
    return _join(rows, axis=1, gap=gap)


def write_gif(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """Write an endlessly looping GIF, for places that cannot show video.

    Pillow merges identical consecutive frames into one longer frame, so the
    file may hold fewer frames than given while playing just as long.
    """
    images = [Image.fromarray(frame) for frame in _checked(frames)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = max(MIN_GIF_MS, round(1000 / fps))
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return path


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode a video file to uint8 RGB frames and its frame rate."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3) for chunk in reader]
    return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8), float(meta["fps"])


def probe(path: str | Path) -> dict:
    """Codec, pixel format, size, frame count and fps of a file's first video stream, read with imageio-ffmpeg's
    bundled ffmpeg (no ffprobe needed)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    reader.close()
    width, height = meta["source_size"]
    return {
        "codec": meta["codec"],
        "pix_fmt": meta["pix_fmt"].split("(")[0],  # "yuv420p(progressive)" -> "yuv420p"
        "width": width,
        "height": height,
        "frames": imageio_ffmpeg.count_frames_and_secs(str(path))[0],
        "fps": float(meta["fps"]),
    }


def audio_streams(path: str | Path) -> list[dict]:
    """Codec, sample rate, channels, duration and title of each sound track of a file, in order (read with PyAV: no
    ffprobe needed)."""
    import av

    with av.open(str(path)) as container:
        return [
            {
                "codec": stream.codec_context.name,
                "rate": stream.rate,
                "channels": stream.layout.nb_channels,
                "duration": float(stream.duration * stream.time_base),
                "title": stream.metadata.get("handler_name", ""),
                "default": bool(stream.disposition & av.stream.Disposition.default),
            }
            for stream in container.streams.audio
        ]


def _checked(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"expected uint8 frames shaped [frames, height, width, 3], got {frames.dtype} {frames.shape}")
    return frames


def _labelled(videos: Sequence[np.ndarray], labels: Sequence[str]) -> list[np.ndarray]:
    """Enlarge every video by one factor and caption it, with bands of one common height, so pictures line up."""
    videos = [_checked(video) for video in videos]
    if not videos or len(videos) != len(labels):
        raise ValueError(f"need one label per video, got {len(videos)} videos and {len(labels)} labels")
    if len({len(video) for video in videos}) != 1:
        raise ValueError(f"videos differ in frame count: {[len(video) for video in videos]}")
    factor = enlargement(videos)
    videos = [video.repeat(factor, axis=1).repeat(factor, axis=2) for video in videos]
    bands = [_band(label, video.shape[2]) for video, label in zip(videos, labels)]
    height = max(band.shape[0] for band in bands)
    bands = [np.concatenate([band, _fill(height - band.shape[0], band.shape[1])]) for band in bands]
    return [_stack_band(video, band) for video, band in zip(videos, bands)]


def _band(text: str, width: int) -> np.ndarray:
    """Render `text` centred in a dark band `width` wide, wrapped between words, of even height."""
    font, lines = caption_lines(text, width)
    ascent, descent = font.getmetrics()
    line_height = ascent + descent
    margin = max(2, font.size // 3)
    height = len(lines) * line_height + 2 * margin
    image = Image.fromarray(_fill(height + height % 2, width))
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((width / 2, margin + index * line_height), line, font=font, fill=INK, anchor="ma")
    return np.asarray(image)


def caption_lines(text: str, width: int) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The font and lines of a caption `width` pixels wide: the size follows the width, smaller where a word would
    not fit on a line; lines break between words only."""
    size = min(MAX_FONT, max(MIN_FONT, round(width / 20)))
    words = text.split() or [""]
    while True:
        font = ImageFont.load_default(size=size)
        room = width - size
        if size == SMALLEST_FONT or max(font.getlength(word) for word in words) <= room:
            return font, _wrap(text, font, room)
        size -= 1


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Greedy word wrap; a word wider than the line stands alone on it."""
    lines = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if line and font.getlength(candidate) > width:
                lines.append(line)
                candidate = word
            line = candidate
        lines.append(line)
    return lines


def _fill(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), BAND, np.uint8)


def _stack_band(frames: np.ndarray, band: np.ndarray) -> np.ndarray:
    return np.concatenate([np.broadcast_to(band, (len(frames), *band.shape)), frames], axis=1)


def _pad(video: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad with black at the bottom and right up to height x width."""
    return np.pad(video, ((0, 0), (0, height - video.shape[1]), (0, width - video.shape[2]), (0, 0)))


def _join(videos: list[np.ndarray], axis: int, gap: int) -> np.ndarray:
    """Concatenate along height (axis 1) or width (axis 2) with black gaps."""
    shape = list(videos[0].shape)
    shape[axis] = gap
    spacer = np.zeros(shape, np.uint8)
    parts = [part for video in videos for part in (spacer, video)][1:]
    return np.concatenate(parts, axis=axis)
