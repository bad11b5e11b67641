"""Open-Sora 1.2 in diffusers' form equals the original code (hpcaitech/Open-Sora v1.2.0) within 1e-5 relative (fp32).

tests/data/opensora/ holds what the original computed on tiny random models (made by stg/opensora/parity_data.py,
whose docstring says exactly what it ran): the state dicts in the original's key names, inputs and outputs. Here
the port loads those state dicts through the converter and must reproduce the outputs.
"""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from safetensors.torch import load_file, save_file

from stg.opensora import OpenSoraPipeline, OpenSoraRFlowScheduler, OpenSoraTransformer3DModel, OpenSoraVAE
from stg.opensora import convert

DATA = pathlib.Path(__file__).parent / "data" / "opensora"
RTOL = 1e-5


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= RTOL * expected.abs().max()


@pytest.fixture(scope="module")
def data():
    return json.loads((DATA / "configs.json").read_text()), load_file(DATA / "io.safetensors")


@pytest.fixture(scope="module")
def original_states():
    return load_file(DATA / "transformer.safetensors"), load_file(DATA / "vae.safetensors")


def vae_config(configs: dict) -> dict:
    """OpenSoraVAE's config for the data's VAE, as the converter reads it from a checkpoint's config.json."""
    hub_style = {"vae_temporal": {"type": "VAE_Temporal", **configs["temporal_vae"]}, "micro_frame_size": 17}
    state = {"shift": torch.tensor(configs["shift"]), "scale": torch.tensor(configs["scale"])}
    return convert.vae_config(hub_style, state, configs["spatial_vae"])


@pytest.fixture(scope="module")
def transformer(data, original_states):
    model = OpenSoraTransformer3DModel(**convert.transformer_config(data[0]["transformer"])).eval()
    model.load_state_dict(convert.transformer_to_diffusers(original_states[0]), strict=True)
    return model


@pytest.fixture(scope="module")
def vae(data, original_states):
    model = OpenSoraVAE(**vae_config(data[0])).eval()
    model.load_state_dict(convert.vae_to_diffusers(original_states[1]), strict=True)
    return model


def _forward(transformer, io, **changes):
    inputs = dict(
        hidden_states=io["transformer_x"], timestep=io["transformer_timestep"],
        encoder_hidden_states=io["transformer_y"][:, 0], encoder_attention_mask=io["transformer_mask"],
        fps=io["transformer_fps"], height=io["transformer_height"], width=io["transformer_width"],
    )
    with torch.no_grad():
        return transformer(**{**inputs, **changes}).sample


def test_transformer_equals_original(transformer, data):
    """Two rows with unequal text masks and timesteps, odd latent sizes (3 x 5 x 7, padded to the 2 x 2 patch)."""
    close(_forward(transformer, data[1]), data[1]["transformer_output"])


def test_text_mask_hides_padding_only(transformer, data):
    """What the parity data pins down reaches the output: padded tokens change nothing, kept ones do."""
    io = data[1]
    text, mask = io["transformer_y"][:, 0], io["transformer_mask"].bool()
    noise = torch.randn(text.shape, generator=torch.Generator().manual_seed(0))
    base = _forward(transformer, io)
    padding_changed = _forward(transformer, io, encoder_hidden_states=torch.where(mask[..., None], text, noise))
    close(padding_changed, base)
    kept_changed = _forward(transformer, io, encoder_hidden_states=torch.where(mask[..., None], noise, text))
    assert (kept_changed - base).abs().max() > 1e-3


@pytest.mark.parametrize("frames", [17, 51])
def test_vae_equals_original(vae, data, frames):
    """Micro-frames of 17: one at 17 frames, three at 51; encode takes both posteriors' means."""
    io = data[1]
    with torch.no_grad():
        close(vae.encode(io[f"vae_video_{frames}"], sample=False), io[f"vae_encoded_{frames}"])
        close(vae.decode(io[f"vae_latents_{frames}"], num_frames=frames), io[f"vae_decoded_{frames}"])
    assert vae.latent_frames(frames) == io[f"vae_latents_{frames}"].shape[2]


def test_sampled_latent_equals_original(transformer, vae, data):
    """The pipeline's stock call (CFG 7 with the learned null text, timestep transform, 3 steps) from the same
    noise and text encoding as the original's RFLOW.sample."""
    configs, io = data
    sample = configs["sample"]
    pipe = OpenSoraPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=vae,
                            scheduler=OpenSoraRFlowScheduler())
    pipe.set_progress_bar_config(disable=True)
    latents = pipe(
        prompt_embeds=io["sample_y"][:, 0], prompt_attention_mask=io["sample_mask"], latents=io["sample_noise"],
        height=sample["height"], width=sample["width"], num_frames=sample["num_frames"], fps=sample["fps"],
        num_inference_steps=sample["steps"], guidance_scale=sample["guidance_scale"], output_type="latent",
    ).frames
    close(latents, io["sample_output"])


def test_timestep_transform():
    """t' = r t / (1 + (r - 1) t) with r = sqrt(H W / 512^2) sqrt(F // 17 * 5): 720p, 51 frames, 30 steps."""
    scheduler = OpenSoraRFlowScheduler()
    scheduler.set_timesteps(30, height=720, width=1280, num_frames=51)
    r = (720 * 1280 / 512**2) ** 0.5 * 15**0.5
    expected = [r * t / (1 + (r - 1) * t) * 1000 for t in [1 - i / 30 for i in range(30)]]
    torch.testing.assert_close(scheduler.timesteps, torch.tensor(expected), rtol=1e-6, atol=1e-4)


def test_too_few_frames_are_refused(transformer, vae):
    pipe = OpenSoraPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=vae,
                            scheduler=OpenSoraRFlowScheduler())
    with pytest.raises(ValueError, match="num_frames must be 1 or at least 17, got 9"):
        pipe(prompt_embeds=torch.zeros(1, 8, 16), height=32, width=32, num_frames=9)


def test_converter_round_trips_strictly(original_states, transformer, vae):
    """Original keys -> ours (loaded strictly above) -> original keys: every tensor back, y_embedding included."""
    for state, to_ours, back, model in [
        (original_states[0], convert.transformer_to_diffusers, convert.transformer_from_diffusers, transformer),
        (original_states[1], convert.vae_to_diffusers, convert.vae_from_diffusers, vae),
    ]:
        ours = to_ours(state)
        assert set(ours) == set(model.state_dict())
        again = back(ours)
        assert set(again) == set(state)
        for key, value in state.items():
            assert torch.equal(again[key], value), key
    assert "y_embedder.y_embedding" in original_states[0]


def test_converter_command_writes_a_loadable_pipeline(tmp_path, data, original_states):
    """The command on folders laid out as the hub's (config.json + model.safetensors) and a T5 folder."""
    from stg.tiny.components import _t5_encoder
    from stg.tiny.tokenizers import t5_tokenizer

    configs = data[0]
    stdit, video_vae, t5 = tmp_path / "stdit", tmp_path / "vae", tmp_path / "t5"
    for folder, state, config in [
        (stdit, original_states[0], {**configs["transformer"], "model_type": "STDiT3"}),
        (video_vae, original_states[1], {"vae_temporal": {"type": "VAE_Temporal", **configs["temporal_vae"]},
                                         "micro_frame_size": 17}),
    ]:
        folder.mkdir()
        save_file(state, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(config))
    t5_tokenizer().save_pretrained(t5)
    _t5_encoder()().save_pretrained(t5)  # only loaded and saved here: its width need not match the data's model
    image_vae = tmp_path / "image_vae"
    from diffusers import AutoencoderKL

    AutoencoderKL(**configs["spatial_vae"]).save_pretrained(image_vae)

    convert.main(["--transformer", str(stdit), "--vae", str(video_vae), "--t5", str(t5),
                  "--spatial-vae", str(image_vae), "--output", str(tmp_path / "out")])
    pipe = OpenSoraPipeline.from_pretrained(tmp_path / "out")
    for model, state, back in [(pipe.transformer, original_states[0], convert.transformer_from_diffusers),
                               (pipe.vae, original_states[1], convert.vae_from_diffusers)]:
        again = back(model.state_dict())
        assert set(again) == set(state) and all(torch.equal(again[k], v) for k, v in state.items())
