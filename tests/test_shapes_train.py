"""The shapes model's training script, end to end at test sizes: the loss falls, a resumed run repeats a straight
one exactly, and the saved folder loads like the shipped one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stg.shapes import train
from trained_worlds import assert_resuming_repeats, logged
from trained_worlds import train as run_training

ARGS = ["--sizes", "test", "--size", "32", "--vae-batch", "8", "--batch", "4", "--patch-steps", "120", "--vae-steps", "10",
        "--eval-every", "0", "--save-every", "15", "--threads", "1", "--warmup", "5", "--vae-warmup", "5",
        "--lr", "2e-3", "--vae-lr", "3e-3"]


def _run(out: Path, steps: int) -> Path:
    return run_training(train, out, steps, ARGS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("straight") / "pipe", 60)


def test_losses_fall(trained):
    patch, vae, transformer = (logged(trained, stage) for stage in ("patch", "vae", "transformer"))
    assert (len(patch), len(vae), len(transformer)) == (120, 10, 60)
    assert patch[-30:].mean() < 0.8 * patch[:30].mean()
    assert transformer[-15:].mean() < 0.8 * transformer[:15].mean()


def test_resumed_run_equals_a_straight_one(trained, tmp_path):
    commands = assert_resuming_repeats(train, trained, tmp_path / "pipe", 60, ARGS)
    assert [c["from"] for c in commands] == ["patch step 0", "transformer step 30"]
    assert [c["command"].split("--steps ")[1].split()[0] for c in commands] == ["30", "60"]


def test_saved_folder_loads_like_the_shipped_model(trained):
    import stg
    from stg.shapes.model import SHIPPED

    record = json.loads((trained / "training.json").read_text())
    assert record["transformer_steps"] == 60 and record["commands"][0]["command"].startswith("python -m stg.shapes.train")
    shipped, saved = (json.loads((folder / "model_index.json").read_text()) for folder in (SHIPPED, trained))
    assert saved.keys() == shipped.keys() and saved["_class_name"] == shipped["_class_name"] == "LTXPipeline"
    for part in ("transformer", "vae", "text_encoder", "scheduler"):
        config = next((SHIPPED / part).glob("*config.json")).name
        assert json.loads((trained / part / config).read_text()).keys() == json.loads((SHIPPED / part / config).read_text()).keys()
    backend = stg.Backend.load(str(trained))
    video = backend.generate("a red circle moving left on a blue background", stg.Guidance(3.0), steps=2,
                             num_frames=9, height=32, width=32)
    assert video.frames.shape == (9, 32, 32, 3)


def test_training_noise_shift_is_the_samplers():
    """`--train-shift s` moves the training noise levels exactly as the saved scheduler with shift s moves its steps."""
    import torch
    from stg.shapes.model import scheduler

    plain = torch.linspace(1.0, 1 / 20, 20)  # LTXPipeline's sigmas before the scheduler shifts them
    sampler = scheduler(shift=3.0)
    sampler.set_timesteps(sigmas=plain.numpy())
    torch.testing.assert_close(train.shifted(plain, 3.0), sampler.sigmas[:-1], rtol=1e-5, atol=1e-6)
    assert torch.equal(train.shifted(plain, 1.0), plain)


def test_edge_loss_charges_a_blurred_edge_and_nothing_for_an_exact_one():
    """`--edge-weight`: the loss on neighbouring pixels' differences is zero for a perfect reconstruction and grows with
    the blur of a square's edges, where a moved edge and a blurred one cost the pixel loss alike."""
    import torch

    clip = torch.zeros(1, 3, 2, 16, 16)
    clip[..., 4:12, 4:12] = 1.0  # a light square on mid grey, away from the frame's edges
    weight = torch.ones_like(clip[:, :1])
    kernel = torch.ones(3, 1, 1, 3, 3) / 9
    blurred = torch.nn.functional.conv3d(clip, kernel, padding=(0, 1, 1), groups=3)
    twice = torch.nn.functional.conv3d(blurred, kernel, padding=(0, 1, 1), groups=3)
    assert train.edge_error(clip, clip, weight) == 0
    assert 0 < train.edge_error(blurred, clip, weight) < train.edge_error(twice, clip, weight)
