"""The tiny pipelines load through the real `from_pretrained` path and generate video on CPU."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from stg import tiny
from stg.pipelines import pipeline_class
from stg.tiny import registry, tokenizers

NAMES = sorted(tiny.TINY_PIPELINES)


def _needs(name: str) -> None:
    if name == "wan-i2v":
        # diffusers' WanImageToVideoPipeline calls ftfy.fix_text without checking that it is installed.
        pytest.importorskip("ftfy", reason="WanImageToVideoPipeline needs the ftfy package")


def _files(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _load(folder, cls=None):
    from diffusers import DiffusionPipeline

    pipe = (cls or DiffusionPipeline).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One build per name, shared by the tests of this module."""
    made: dict[str, pathlib.Path] = {}

    def get(name: str) -> pathlib.Path:
        if name not in made:
            made[name] = tiny.build(name, tmp_path_factory.mktemp(name))
        return made[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_stock_call(name, folders):
    _needs(name)
    spec, sizes = tiny.TINY_PIPELINES[name], tiny.TINY_SIZES[name]
    pipe = _load(folders(name), pipeline_class(spec.pipeline))
    assert type(pipe).__name__ == spec.pipeline
    assert json.loads((folders(name) / "model_index.json").read_text())["_class_name"] == spec.pipeline

    frames = pipe(**tiny.stock_call_kwargs(name)).frames
    assert frames.shape == (1, sizes["num_frames"], sizes["height"], sizes["width"], 3)
    assert np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1

    # Same seed, same video; another prompt (another image, for a model conditioned on an image alone) reaches the
    # transformer and changes it.
    again = pipe(**tiny.stock_call_kwargs(name)).frames
    np.testing.assert_array_equal(frames, again)
    kwargs = tiny.stock_call_kwargs(name)
    other = {"prompt": "a blue whale in the ocean"} if "prompt" in kwargs else \
        {"image": kwargs["image"].transpose(0)}  # mirrored left to right
    other = pipe(**tiny.stock_call_kwargs(name, **other)).frames
    assert np.abs(frames - other).max() > 1e-6


# SVD's UNet is not a block stack: its 16 spatial and 16 temporal layers are counted in tests/test_svd.py.
@pytest.mark.parametrize("name", [name for name in NAMES if name != "svd"])
def test_depth_is_the_number_of_main_blocks(name, folders):
    config = json.loads((folders(name) / "transformer" / "config.json").read_text())
    assert config["num_layers"] == tiny.TINY_SIZES[name]["depth"] == 4


@pytest.mark.parametrize("name", NAMES)
def test_build_is_bitwise_reproducible(name, folders, tmp_path):
    again = tiny.build(name, tmp_path / name)
    assert _files(again) == _files(folders(name))


def test_ltx_folder_also_loads_as_image_to_video(folders):
    from diffusers import LTXImageToVideoPipeline

    assert "LTXImageToVideoPipeline" in tiny.TINY_PIPELINES["ltx"].also_loads_as
    pipe = _load(folders("ltx"), LTXImageToVideoPipeline)
    sizes = tiny.TINY_SIZES["ltx"]
    image = tiny.stock_image(sizes["height"], sizes["width"])
    frames = pipe(**tiny.stock_call_kwargs("ltx", image=image)).frames
    assert frames.shape == (1, 9, 32, 32, 3) and np.isfinite(frames).all()


def test_ltx_keeps_the_real_compression_ratios(folders):
    pipe = _load(folders("ltx"))
    assert (pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio) == (32, 8)


def test_transformer_heavy_overrides(tmp_path):
    folder = tiny.build("ltx", tmp_path, num_layers=12, width=128)
    pipe = _load(folder)
    config = pipe.transformer.config
    assert config.num_layers == 12 and config.num_attention_heads * config.attention_head_dim == 128
    frames = pipe(**tiny.stock_call_kwargs("ltx")).frames
    assert np.isfinite(frames).all()


def test_component_config_override(tmp_path):
    folder = tiny.build("wan", tmp_path, transformer={"ffn_dim": 24})
    assert json.loads((folder / "transformer" / "config.json").read_text())["ffn_dim"] == 24


def test_bad_names_and_overrides_are_refused(tmp_path):
    with pytest.raises(KeyError):
        tiny.build("no-such-model", tmp_path)
    with pytest.raises(TypeError):
        tiny.build("ltx", tmp_path, depth=3)
    with pytest.raises(ValueError):
        tiny.build("ltx", tmp_path, width=33)


def test_cached_builds_once_and_keys_on_overrides(tmp_path):
    first = tiny.cached("mochi", tmp_path)
    stamp = (first / "model_index.json").stat().st_mtime_ns
    assert first.parent == tmp_path and first.name.startswith("mochi-")
    assert tiny.cached("mochi", tmp_path) == first
    assert (first / "model_index.json").stat().st_mtime_ns == stamp

    other = tiny.cached("mochi", tmp_path, num_layers=2)
    assert other != first and other.name.startswith("mochi-")
    assert json.loads((other / "transformer" / "config.json").read_text())["num_layers"] == 2
    # No temporary folders are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


def test_cached_default_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STG_CACHE", str(tmp_path / "env"))
    assert tiny.cached("mochi").parent == tmp_path / "env"


def test_cached_keeps_the_folder_of_a_process_that_finished_first(tmp_path, monkeypatch):
    real_build = registry.build
    target = {}

    def racing_build(name, folder, **overrides):
        # Another process finishes the same folder while this one is still building.
        real_build(name, target["path"], **overrides)
        target["stamp"] = (target["path"] / "model_index.json").stat().st_mtime_ns
        return real_build(name, folder, **overrides)

    target["path"] = tmp_path / f"mochi-{registry._cache_key('mochi', {})}"
    monkeypatch.setattr(registry, "build", racing_build)
    assert tiny.cached("mochi", tmp_path) == target["path"]
    assert (target["path"] / "model_index.json").stat().st_mtime_ns == target["stamp"]
    assert [p.name for p in tmp_path.iterdir()] == [target["path"].name]


@pytest.mark.parametrize("folder_name", ["tokenizer", "tokenizer_2"])
def test_hunyuan_tokenizers_round_trip(folder_name, folders):
    from transformers import AutoTokenizer

    folder = folders("hunyuan-video") / folder_name
    built = {"tokenizer": tokenizers.llama_tokenizer, "tokenizer_2": tokenizers.clip_tokenizer}[folder_name]()
    loaded = AutoTokenizer.from_pretrained(folder)
    text = "A red fox runs through the snowy forest, cinematic. Zebra!"
    assert loaded(text).input_ids == built(text).input_ids
    assert loaded.unk_token not in loaded.tokenize(text)  # characters catch unknown words


def test_t5_tokenizer_round_trips_and_knows_prompt_words(folders):
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(folders("ltx") / "tokenizer")
    assert loaded.tokenize("a red fox, blurry") == ["\u2581a", "\u2581red", "\u2581fox", ",", "\u2581blurry"]
    assert loaded("Zebra").input_ids == tokenizers.t5_tokenizer()("Zebra").input_ids


def test_hunyuan_template_crops_exactly_the_system_part():
    """HunyuanVideo drops the first 95 tokens (the template); the tiny Llama tokenizer makes it 95 too."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    tokenizer = tokenizers.llama_tokenizer()
    prefix = DEFAULT_PROMPT_TEMPLATE["template"].split("{}")[0]
    assert len(tokenizer(prefix).input_ids) == DEFAULT_PROMPT_TEMPLATE["crop_start"]
    ids = tokenizer(DEFAULT_PROMPT_TEMPLATE["template"].format("a red fox")).input_ids
    assert tokenizer.convert_ids_to_tokens(ids[DEFAULT_PROMPT_TEMPLATE["crop_start"] :])[:3] == [
        "a",
        "\u2581red",
        "\u2581fox",
    ]


def test_bpe_words_encode_whole():
    """Every listed word is one token, whatever merges the other words added."""
    llama, clip = tokenizers.llama_tokenizer(), tokenizers.clip_tokenizer()
    for word in tokenizers.WORDS:
        assert llama.tokenize(word) == ["\u2581" + word]
        assert llama.tokenize("\n" + word.capitalize())[-1] == word.capitalize()
        assert clip.tokenize(word) == [word + "</w>"]


def test_stock_sizes_are_public():
    assert set(tiny.TINY_SIZES) == set(tiny.TINY_PIPELINES)
    for sizes in tiny.TINY_SIZES.values():
        assert set(sizes) == {"num_frames", "height", "width", "depth"}
    assert tiny.TINY_SIZES["ltx"] == {"num_frames": 9, "height": 32, "width": 32, "depth": 4}



def test_hunyuan15_template_crops_exactly_the_system_part(folders):
    """HunyuanVideo 1.5 drops the first 108 tokens of its chat template; the tiny Qwen tokenizer makes them 108 too."""
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5 import format_text_input

    pipe = _load(folders("hunyuan-video-1.5"))
    crop = pipe.prompt_template_encode_start_idx
    ids = pipe.tokenizer.apply_chat_template(format_text_input(["a red fox"], pipe.system_message),
                                             add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"][0]
    assert crop == 108 and pipe.tokenizer.convert_ids_to_tokens(ids[crop:crop + 3]) == ["a", "\u0120red", "\u0120fox"]
