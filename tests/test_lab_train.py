"""The lab model's training, end to end at test sizes: the loss falls, a resumed run repeats a straight one exactly (on
fresh clips and on reused pools of encoded ones), and the saved folder loads and generates at the lab's size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stg.lab import train
from trained_worlds import assert_resuming_repeats, logged
from trained_worlds import train as run_training

ARGS = ["--sizes", "test", "--vae-batch", "8", "--batch", "4", "--vae-steps", "30", "--eval-every", "0",
        "--save-every", "10", "--threads", "1", "--warmup", "5", "--vae-warmup", "5", "--lr", "2e-3",
        "--context-lr", "3e-3"]


def _run(out: Path, steps: int) -> Path:
    return run_training(train, out, steps, ARGS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("straight") / "pipe", 40)


def test_losses_fall(trained):
    vae, transformer = logged(trained, "vae"), logged(trained, "transformer")
    assert (len(logged(trained, "patch")), len(vae), len(transformer)) == (0, 30, 40)
    assert vae[-10:].mean() < 0.9 * vae[:10].mean()
    assert transformer[-10:].mean() < 0.8 * transformer[:10].mean()


def test_resumed_run_equals_a_straight_one(trained, tmp_path):
    commands = assert_resuming_repeats(train, trained, tmp_path / "pipe", 40, ARGS)
    assert [c["from"] for c in commands] == ["patch step 0", "transformer step 20"]
    assert all(c["command"].startswith("python -m stg.lab.train ") for c in commands)


def test_a_run_stopped_past_its_checkpoint_logs_each_step_once(trained, tmp_path):
    """A run killed after its checkpoint at step 40 has logged steps 41-43; resumed, it takes them again, and its log
    keeps the new entries alone, each step once."""
    import shutil

    folder = tmp_path / "pipe"
    shutil.copytree(trained, folder)
    shutil.copytree(f"{trained}.work", f"{folder}.work")
    log = Path(f"{folder}.work") / "log.jsonl"
    with open(log, "a") as handle:
        for step in (41, 42, 43):
            entry = {"stage": "transformer", "step": step, "loss": 9.0, "lr": 2e-3, "seconds": 0}
            handle.write(json.dumps(entry) + "\n")
    run_training(train, folder, 45, ARGS)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["stage"], e["step"]) for e in entries] == [("vae", n) for n in range(1, 31)] + [
        ("transformer", n) for n in range(1, 46)]
    np.testing.assert_array_equal(logged(folder, "transformer")[:40], logged(trained, "transformer"))
    assert 9.0 not in logged(folder, "transformer")


REUSE = ["--reuse", "2", "--pool-steps", "8"]


@pytest.fixture(scope="module")
def reused(tmp_path_factory) -> Path:
    return run_training(train, tmp_path_factory.mktemp("reused") / "pipe", 40, [*ARGS, *REUSE])


def test_reusing_encoded_clips_trains_and_resumes_exactly(trained, reused, tmp_path):
    """`--reuse 2`: the transformer learns from pools of encoded clips, each clip serving two samples; the loss falls
    as it does on fresh clips, and a run resumed inside a pool's round (step 20 of rounds of 8) repeats a straight
    one."""
    fresh, pooled = logged(trained, "transformer"), logged(reused, "transformer")
    assert pooled[-10:].mean() < 0.8 * pooled[:10].mean()
    assert not np.array_equal(fresh, pooled)
    assert_resuming_repeats(train, reused, tmp_path / "pipe", 40, [*ARGS, *REUSE])


def test_a_pool_serves_each_of_its_clips_reuse_times(reused):
    import torch
    from diffusers import LTXPipeline

    from stg.shapes import train as trainer

    args = trainer.parse_args(["--out", str(reused), *ARGS, *REUSE], train.LAB)
    state = {"pipe": LTXPipeline.from_pretrained(reused, torch_dtype=torch.float32)}
    latents, prompts, order = trainer.pool(state, args, 1)
    assert len(latents) == len(prompts) == 8 * 4 // 2 and latents.shape[1:] == (8, 5, 4, 4)
    assert np.bincount(order).tolist() == [2] * 16
    batch, names = trainer.training_batch(state, args, 8 + 3, np.random.default_rng(0))
    assert torch.equal(batch, latents[order[12:16]]) and names == [prompts[i] for i in order[12:16]]
    with pytest.raises(SystemExit):
        trainer.parse_args(["--out", str(reused), "--reuse", "0"], train.LAB)


def test_saved_folder_generates_at_the_lab_size(trained):
    import stg

    vae = json.loads((trained / "vae" / "config.json").read_text())
    assert vae["patch_size"] * 2 ** sum(vae["spatio_temporal_scaling"]) == 16  # 16x space, 4x time
    assert 2 ** sum(vae["spatio_temporal_scaling"]) == 4
    backend = stg.Backend.load(str(trained))
    video = backend.generate("two small red squares bouncing quickly on a striped grey background", stg.Guidance(3.0),
                             steps=2, num_frames=17, height=64, width=64)
    assert video.frames.shape == (17, 64, 64, 3)


def test_a_trained_folder_loads_and_is_judged_as_the_lab_model(trained, tmp_path, capsys):
    """A folder the lab trainer wrote gets the lab preset (its sizes, figures and world) with its own weights, so
    `python -m stg.evaluate --model FOLDER` judges a model in training; the same folder without its training record
    is a plain LTX-Video folder, with no ground truth."""
    import shutil

    import stg
    from stg import evaluate, judged, presets
    from stg.lab import judge

    preset = presets.find(str(trained))
    assert (preset.key, preset.source, preset.figures) == ("lab", str(trained.resolve()), ("video", "lab"))
    assert preset.defaults == presets.get("lab").defaults and judged.world(str(trained)).attributes == judge.ATTRIBUTES
    assert preset.look_for.startswith("(measured on the shipped `lab` model, not on these weights) small differences")
    backend = stg.Backend.load(str(trained))
    assert backend.preset == preset and backend.model == str(trained)
    assert evaluate.main(["--model", str(trained), "--prompts", "2", "--steps", "2", "--stg-blocks", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{trained}: 2 prompts (draw 0), 2 steps, 17 frames of 64x64")
    assert all(f"{name} right, %" in out for name in judge.ATTRIBUTES)
    assert "\nshape_iou " in out and "lower is better (shape_iou: higher)" in out  # an overlap: no unit, higher truer
    plain = tmp_path / "plain"
    shutil.copytree(trained, plain)
    (plain / "training.json").unlink()
    assert presets.find(str(plain)) is None and not judged.has_world(str(plain))
    assert evaluate.main(["--model", str(plain), "--prompts", "1"]) == 2
    assert "has no ground truth to judge against" in capsys.readouterr().err


def test_the_lab_preset_loads_the_shipped_folder_offline():
    import stg
    from stg.lab.model import SHIPPED

    backend = stg.Backend.load("lab")
    assert Path(backend.preset.source) == SHIPPED and backend.preset.figures == ("video", "lab")
    video = backend.generate("a large red circle moving right quickly on a plain black background", stg.Guidance(4.0),
                             steps=2)
    assert video.frames.shape == (17, 64, 64, 3)
    assert "lab model never saw 'purple'" in backend.preset.prompt_note("a purple circle")


def test_the_vae_ceiling_judges_clips_as_rendered_and_after_the_round_trip(capsys):
    """`python -m stg.lab.ceiling`: every rendered clip is read right; the shipped VAE's round trip keeps what it
    keeps best (the colours), so the table it prints measures the VAE, not a broken round trip."""
    from diffusers import AutoencoderKLLTXVideo

    from stg.lab import ceiling, judge, world
    from stg.lab.model import SHIPPED

    vae = AutoencoderKLLTXVideo.from_pretrained(SHIPPED, subfolder="vae").eval()
    clip = world.render(world.random_scene(np.random.default_rng(3)))
    decoded = ceiling.round_trip(vae, clip)
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8
    shares, judders = ceiling.ceiling(vae, clips=8)
    assert set(shares["rendered"].values()) == {1.0}
    assert shares["round trip"]["colour"] >= 7 / 8 and shares["round trip"]["background"] >= 7 / 8
    assert ceiling.main(["--clips", "2", "--diversity", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[2:] == [*judge.ATTRIBUTES, "judder", "%"]
    assert lines[-3].split() == ["diversity", *judge.DIVERSITY] and lines[-1].startswith("round trip")
    rendered = [float(value) for value in lines[-2].split()[1:]]  # a few clips of the training data, as rendered
    assert lines[-2].startswith("rendered") and all(0.5 < ratio < 1.5 for ratio in rendered)


def test_the_ceiling_sheet_shows_each_clip_beside_its_round_trip(tmp_path):
    """`--sheet PNG`: one row per clip of the seed, frames 8 and 16 each as rendered and as round-tripped."""
    from diffusers import AutoencoderKLLTXVideo
    from PIL import Image

    from stg.lab import ceiling, world
    from stg.lab.model import SHIPPED

    vae = AutoencoderKLLTXVideo.from_pretrained(SHIPPED, subfolder="vae").eval()
    rows = ceiling.sheet(vae, rows=2, seed=5)
    rng = np.random.default_rng(5)
    for row in range(2):
        scene = world.random_scene(rng)
        clip, line = world.render(scene), rows[64 * row:64 * (row + 1)]
        assert np.array_equal(line[:, :64], clip[8]) and np.array_equal(line[:, 128:192], clip[16])
        assert np.array_equal(line[:, 64:128], ceiling.round_trip(vae, clip)[8])
    assert ceiling.main(["--clips", "1", "--sheet", str(tmp_path / "sheet.png")]) == 0
    assert Image.open(tmp_path / "sheet.png").size == (4 * 64 * 3, 6 * 64 * 3)


def test_vae_learning_rate_decays_linearly_to_zero_from_the_named_step(tmp_path):
    """`--vae-decay-from 3` with `--vae-steps 6`: the context stage's first three steps take the full rate, the last
    three fall linearly toward zero; the log records each step's rate, and the transformer stage's is untouched."""
    folder = run_training(train, tmp_path / "pipe", 2, ["--sizes", "test", "--vae-batch", "2", "--batch", "2",
                                                        "--vae-steps", "6", "--vae-decay-from", "3",
                                                        "--vae-warmup", "1", "--context-lr", "3e-3", "--warmup", "1",
                                                        "--lr", "2e-3", "--eval-every", "0", "--threads", "1"])
    np.testing.assert_allclose(logged(folder, "vae", "lr"), [3e-3, 3e-3, 3e-3, 3e-3, 2e-3, 1e-3], rtol=1e-5)
    assert logged(folder, "transformer", "lr").tolist() == [2e-3, 2e-3]


def test_fine_latents_size_trains_and_generates_through_8x8_latents(tmp_path):
    """`--sizes fine-latents`: its VAE compresses space 8x into 12 channels, so 17 frames of 64x64 are 5 latent frames
    of 8x8, 320 tokens; two steps of each stage train, and the saved folder generates at the lab's size."""
    import stg

    folder = run_training(train, tmp_path / "pipe", 2, ["--sizes", "fine-latents", "--vae-batch", "2", "--batch", "2",
                                                        "--vae-steps", "2", "--eval-every", "0", "--threads", "1"])
    vae = json.loads((folder / "vae" / "config.json").read_text())
    assert vae["patch_size"] * 2 ** sum(vae["spatio_temporal_scaling"]) == 8 and vae["latent_channels"] == 12
    assert len(logged(folder, "transformer")) == 2
    tokens = []
    backend = stg.Backend.load(str(folder))
    backend.pipe.transformer.register_forward_pre_hook(
        lambda _, args, kwargs: tokens.append(kwargs["hidden_states"].shape[1]), with_kwargs=True)
    video = backend.generate("a small red square moving up slowly on a plain black background", stg.Guidance(1.0),
                             steps=2, num_frames=17, height=64, width=64)
    assert video.frames.shape == (17, 64, 64, 3) and tokens == [320, 320]
