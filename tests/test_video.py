"""Video files and layouts, encoded with the real ffmpeg."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stg import video
from stg.video import BAND, Track, audio_streams, caption, grid, probe, read_video, side_by_side, write_gif, write_mp4


def smooth_clip(frames: int, height: int, width: int) -> np.ndarray:
    """Gentle gradients that survive lossy coding nearly unchanged."""
    y, x = np.mgrid[:height, :width]
    clip = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        clip[t, ..., 0] = 40 + 150 * x / width
        clip[t, ..., 1] = 40 + 150 * y / height
        clip[t, ..., 2] = 60 + 12 * t
    return clip


def noise(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def test_mp4_round_trip(tmp_path):
    clip = smooth_clip(9, 32, 48)
    path = write_mp4(clip, tmp_path / "clip.mp4", fps=8)
    assert probe(path) == {"codec": "h264", "pix_fmt": "yuv420p", "width": 48, "height": 32, "frames": 9, "fps": 8.0}
    frames, fps = read_video(path)
    assert fps == 8.0
    assert frames.shape == clip.shape
    assert np.abs(frames.astype(int) - clip).mean() < 3


def test_mp4_is_fast_start(tmp_path):
    data = write_mp4(smooth_clip(3, 32, 32), tmp_path / "clip.mp4", fps=8).read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


def test_odd_size_is_padded_not_cropped(tmp_path):
    clip = smooth_clip(5, 33, 47)
    path = write_mp4(clip, tmp_path / "odd.mp4", fps=8)
    info = probe(path)
    assert (info["width"], info["height"], info["pix_fmt"]) == (48, 34, "yuv420p")
    frames = read_video(path)[0].astype(int)
    assert np.abs(frames[:, :33, :47] - clip).mean() < 3  # the whole picture, in place
    # The added row and column repeat the edge, so nothing dark creeps in.
    assert np.abs(frames[:, 33, :47] - clip[:, 32]).mean() < 4
    assert np.abs(frames[:, :33, 47] - clip[:, :, 46]).mean() < 4


def test_single_frame_mp4(tmp_path):
    path = write_mp4(smooth_clip(1, 32, 32), tmp_path / "one.mp4", fps=24)
    assert probe(path)["frames"] == 1
    assert read_video(path)[0].shape == (1, 32, 32, 3)


def test_probes_need_no_ffprobe(tmp_path, monkeypatch):
    path = write_mp4(smooth_clip(7, 31, 40), tmp_path / "clip.mp4", fps=12, audio=[Track(tone(440, 0.3), 8000, "CFG")])
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffprobe, nor any other program, to be found
    assert probe(path) == {"codec": "h264", "pix_fmt": "yuv420p", "width": 40, "height": 32, "frames": 7, "fps": 12.0}
    assert [(s["codec"], s["title"]) for s in audio_streams(path)] == [("aac", "CFG")]


def tone(hertz: float, seconds: float, rate: int = 8000) -> np.ndarray:
    """A stereo sine, louder on the left."""
    t = np.arange(round(seconds * rate)) / rate
    wave = np.sin(2 * np.pi * hertz * t).astype(np.float32)
    return np.stack([0.5 * wave, 0.25 * wave])


def test_mp4_carries_its_sound_as_aac(tmp_path):
    path = write_mp4(smooth_clip(12, 32, 32), tmp_path / "clip.mp4", fps=24, audio=[Track(tone(440, 0.5), 8000, "CFG")])
    [stream] = audio_streams(path)
    assert stream["codec"] == "aac" and stream["rate"] == 8000 and stream["channels"] == 2
    assert stream["title"] == "CFG" and stream["default"] and abs(stream["duration"] - 0.5) < 0.2
    assert probe(path)["frames"] == 12


def test_side_by_side_file_carries_both_sounds_first_one_default(tmp_path):
    tracks = [Track(tone(440, 0.5), 8000, "CFG"), Track(tone(660, 0.5), 8000, "CFG + STG")]
    path = write_mp4(smooth_clip(12, 32, 64), tmp_path / "both.mp4", fps=24, audio=tracks)
    streams = audio_streams(path)
    assert [s["title"] for s in streams] == ["CFG", "CFG + STG"] and [s["default"] for s in streams] == [True, False]


def test_silent_mp4_has_no_sound_track(tmp_path):
    assert audio_streams(write_mp4(smooth_clip(3, 32, 32), tmp_path / "quiet.mp4", fps=8)) == []


def test_write_mp4_rejects_wrong_frames(tmp_path):
    with pytest.raises(ValueError):
        write_mp4(np.zeros((4, 32, 32), np.uint8), tmp_path / "bad.mp4", fps=8)
    with pytest.raises(ValueError):
        write_mp4(np.zeros((4, 32, 32, 3), np.float32), tmp_path / "bad.mp4", fps=8)


def test_caption_adds_dark_band_above_and_keeps_input():
    clip = noise(3, 40, 64)
    before = clip.copy()
    out = caption(clip, "CFG + STG")
    band = out.shape[1] - 40
    assert out.shape == (3, 40 + band, 64, 3)
    assert band > 0 and band % 2 == 0
    np.testing.assert_array_equal(out[:, band:], clip)
    np.testing.assert_array_equal(clip, before)
    assert (out[:, :band] == BAND).all(axis=-1).mean() > 0.5
    assert out[:, :band].max() > 200  # white text is drawn


def test_long_caption_wraps_within_width():
    short = caption(noise(1, 32, 64), "CFG")
    long = caption(noise(1, 32, 64), "CFG + STG with a rather long description of the settings")
    assert long.shape[2] == 64
    assert long.shape[1] > short.shape[1]
    assert long.shape[1] % 2 == 0


LABELS = ["CFG: w 3", "CFG + STG: w 3, s 1, stg-a, block 2, rescale 0.7",
          "CFG + STG: w 12.5, s 2.25, stg-r, blocks 0, 1, 2, 3, steps 0.25-0.75, rescale 0.35"]


@pytest.mark.parametrize("width,height", [(32, 32), (64, 32), (32, 256), (256, 32), (96, 64), (768, 512), (1280, 1024)])
def test_captions_stay_readable_at_every_size(width, height):
    """Captions never break a word, keep a readable font, and stand above a picture at least as tall as they are."""
    factor = video.enlargement([noise(1, height, width)])
    picture = height * factor
    assert width * factor >= min(video.CAPTIONED_WIDTH, width * (video.ENLARGED_HEIGHT // height))
    for label in LABELS:
        font, lines = video.caption_lines(label, width * factor)
        assert " ".join(lines).split() == label.split()  # whole words, in order
        assert all(font.getlength(line) <= width * factor - font.size for line in lines)
        assert font.size >= video.MIN_FONT
        out = side_by_side([noise(2, height, width), noise(2, height, width, seed=1)], ["CFG: w 3", label])
        assert out.shape[1] - picture <= max(picture, 64), (out.shape, picture)


def test_a_word_too_long_for_its_line_gets_a_smaller_font_not_a_break():
    font, lines = video.caption_lines("block spatiotemporal-skip-guidance-everywhere", 128)
    assert lines == ["block", "spatiotemporal-skip-guidance-everywhere"] and font.size < video.MIN_FONT


def test_side_by_side_width_and_bands():
    a, b = noise(5, 32, 64, seed=1), noise(5, 48, 80, seed=2)
    factor = video.enlargement([a, b])
    assert factor == 4  # the narrower video to the captioned width, 256 px
    out = side_by_side([a, b], ["CFG", "CFG + STG"], gap=4)
    assert out.shape[0] == 5
    assert out.shape[2] == (64 + 80) * factor + 4
    band = out.shape[1] - 48 * factor
    np.testing.assert_array_equal(out[:, band : band + 32 * factor : factor, : 64 * factor : factor], a)
    np.testing.assert_array_equal(out[:, band::factor, 64 * factor + 4 :: factor], b)
    assert (out[:, band + 32 * factor :, : 64 * factor] == 0).all()  # shorter video padded below
    assert (out[:, :, 64 * factor : 64 * factor + 4] == 0).all()  # the gap
    large = [noise(1, 256, 320, seed=3), noise(1, 256, 320, seed=4)]
    assert side_by_side(large, ["CFG", "CFG + STG"]).shape[2] == 2 * 320 + 4  # large enough: not enlarged


def test_side_by_side_needs_equal_frame_counts():
    with pytest.raises(ValueError):
        side_by_side([noise(5, 32, 32), noise(6, 32, 32)], ["a", "b"])
    with pytest.raises(ValueError):
        side_by_side([noise(5, 32, 32)], ["a", "b"])


def test_grid_shape_and_empty_cell():
    videos = [noise(2, 32, 48, seed=s) for s in range(3)]
    factor = video.enlargement(videos)
    width = 48 * factor
    out = grid(videos, ["a", "b", "c"], gap=2)
    cell = caption(videos[0].repeat(factor, axis=1).repeat(factor, axis=2), "a").shape[1]
    assert out.shape == (2, 2 * cell + 2, 2 * width + 2, 3)
    assert (out[:, cell + 2 :, width + 2 :] == 0).all()
    assert grid(videos, ["a", "b", "c"], columns=3, gap=2).shape == (2, cell, 3 * width + 4, 3)


def test_gif_loops_with_every_frame(tmp_path):
    clip = smooth_clip(6, 32, 40)
    path = write_gif(clip, tmp_path / "clip.gif", fps=10)
    with Image.open(path) as gif:
        assert gif.info["loop"] == 0
        assert gif.n_frames == 6
        assert gif.size == (40, 32)
        assert gif.info["duration"] == 100
