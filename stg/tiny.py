"""Tiny, deterministic video diffusion pipelines built from configs.

No model hub is reachable in tests or CI, so every supported model family is built here from a
config with random weights, with fixed seeds, and saved with ``save_pretrained``. Callers then load
it through the real path, ``PipelineClass.from_pretrained(folder)``, exactly as they would a
downloaded checkpoint. Sizes are kept small but the latent compression ratios and patch sizes are
the real ones, so each pipeline's own size rules (multiples of 32 px for LTX, 8n+1 frames, ...)
still apply.

Tokenizers are built offline from a small English word list, with single characters as a fallback
so that any prompt still encodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import string
import tempfile
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["TINY_PIPELINES", "TINY_SIZES", "TinyPipeline", "build", "cached", "stock_call_kwargs", "stock_image"]

# Bump when a config below changes, so that `cached` folders made before are not reused.
_FORMAT = 1

# Common words of prompts, negative prompts and the HunyuanVideo prompt template.
_WORDS = sorted(
    set(
        """
    a an the of in on at by to and or with without from into over under near through while its his her
    their this that is are was be it as for up down out off very more most
    video image photo scene shot clip film movie frame frames camera view close closeup wide angle
    angles aerial slow motion moves moving move movement movements pan pans zoom tracking static
    cinematic realistic detailed high quality best worst low resolution sharp focus blurry blur
    blurred jittery distorted deformed ugly bad noisy noise artifacts inconsistent watermark text
    overexposed underexposed static still grainy glitch flicker flickering
    red orange yellow green blue purple pink white black gray grey brown golden silver dark bright
    light colorful warm cool soft
    fox dog cat bird birds horse fish whale dolphin rabbit bear lion tiger wolf deer cow sheep duck
    butterfly bee monkey panda eagle owl dragon robot car cars train boat ship plane bike bicycle
    man woman person people child girl boy family crowd astronaut dancer chef
    tree trees forest flower flowers grass field meadow garden leaves leaf mountain mountains hill
    river lake ocean sea beach wave waves water rain snow ice fire smoke cloud clouds sky sun sunset
    sunrise moon stars night day morning evening city street road building buildings house room
    kitchen window door table desert island waterfall space planet earth
    runs running walks walking jumps jumping flies flying swims swimming dances dancing sits sitting
    stands standing plays playing eats eating looks looking turns turning falls falling rises rising
    flows flowing drives driving rides riding smiles smiling waves waving spins spinning glowing
    floating
    big small tiny large huge little old young new beautiful cute happy sad calm gentle fast quick
    lazy fluffy shiny wet dry
    one two three four five
    describe detailing following aspects main content theme shape size texture quantity spatial
    relationships objects actions events behaviors temporal physical changes background
    environment style atmosphere transitions used system user
    """.split()
    )
)
_PUNCT = string.punctuation
_WORDPIECE = "\u2581"  # SentencePiece's word-start marker, used by T5 and Llama tokenizers

# Text encoder shapes.
_T5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8)
_T5_DIM = _T5["d_model"]
# HunyuanVideo reads Llama's third-last hidden state: three layers leave one that does work.
_LLAMA = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
# Wan reads the CLIP image encoder's second-last hidden state: 16 patches + 1 class token.
_CLIP_VISION = dict(
    hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
)
_CLIP = dict(
    hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77
)


# ---------------------------------------------------------------------------------------------
# Tokenizers


@cache
def _t5_vocab() -> list[tuple[str, float]]:
    """Unigram pieces: whole words are preferred, single characters catch anything else."""
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), (_WORDPIECE, -2.0)]
    chars = [(c, -5.0) for c in string.ascii_letters + string.digits + _PUNCT]
    words = [(_WORDPIECE + w, -1.0) for w in _WORDS]
    words += [(_WORDPIECE + w.capitalize(), -1.5) for w in _WORDS]
    return specials + chars + words


def _t5_tokenizer():
    from transformers import T5TokenizerFast

    return T5TokenizerFast(vocab=list(_t5_vocab()), extra_ids=0)


def _bpe_encode(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Encode as BPE does: merge the lowest-ranked adjacent pair, leftmost first, until none is left."""
    pieces = list(pieces)
    while pairs := [(ranks[p], i) for i, p in enumerate(zip(pieces, pieces[1:])) if p in ranks]:
        _, i = min(pairs)
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def _bpe(symbols: list[str], words: list[list[str]]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A BPE vocabulary and merges under which each word of `words` encodes as one token.

    Words are added one by one: while a word encodes as several pieces, merges that join them left
    to right are appended. Later merges rank lower, so they never change how an earlier word encodes.
    """
    vocab = {s: i for i, s in enumerate(dict.fromkeys(symbols))}
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        while len(pieces := _bpe_encode(word, ranks)) > 1:
            current = pieces[0]
            for piece in pieces[1:]:
                ranks.setdefault((current, piece), len(ranks))
                current += piece
                vocab.setdefault(current, len(vocab))
    return vocab, list(ranks)


# Llama-3 style special tokens, as in the HunyuanVideo prompt template.
_LLAMA_TOKENS = dict(
    unk_token="<unk>", bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", pad_token="<pad>"
)
_LLAMA_HEADERS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
_CLIP_TOKENS = dict(bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@cache
def _llama_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-fallback BPE; words with and without a leading space, lower case and capitalised.

    Bare words matter after special tokens and newlines, as in the HunyuanVideo template.
    """
    chars = list(string.ascii_letters + string.digits + _PUNCT + "\n") + [_WORDPIECE]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    forms = [f for w in _WORDS for f in (w, w.capitalize())]
    words = [[_WORDPIECE, *f] for f in forms] + [list(f) for f in forms] + [["\n", "\n"]]
    return _bpe([*_LLAMA_TOKENS.values(), *_LLAMA_HEADERS, *byte_tokens, *chars], words)


@cache
def _clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP BPE (lower case, ``</w>`` marks a word's end), as its vocab.json + merges.txt would hold."""
    chars = list(string.ascii_lowercase + string.digits + _PUNCT)
    words = [[*w[:-1], w[-1] + "</w>"] for w in _WORDS if len(w) > 1]
    return _bpe([*_CLIP_TOKENS.values(), *chars, *(c + "</w>" for c in chars)], words)


def _bpe_tokenizer(cls: str, vocab: Callable, tokens: dict, **kwargs):
    """A transformers BPE tokenizer class over one of the vocabularies above."""
    import transformers

    vocab, merges = vocab()
    return getattr(transformers, cls)(vocab=dict(vocab), merges=list(merges), **tokens, **kwargs)


_llama_tokenizer = partial(
    _bpe_tokenizer,
    "LlamaTokenizerFast",
    _llama_vocab,
    _LLAMA_TOKENS,
    add_bos_token=True,
    additional_special_tokens=_LLAMA_HEADERS,
    # HunyuanVideo crops the template from the front of the sequence: padding must be on the right.
    padding_side="right",
)
_clip_tokenizer = partial(_bpe_tokenizer, "CLIPTokenizer", _clip_vocab, _CLIP_TOKENS)


# ---------------------------------------------------------------------------------------------
# Components


def _hf(model_cls: str, config_cls: str, **config):
    """A transformers model with random weights from a config (both named, imported lazily)."""
    import transformers

    return getattr(transformers, model_cls)(getattr(transformers, config_cls)(**config))


def _diffusers(cls: str, **config):
    """A diffusers model or scheduler from its config (named, imported lazily)."""
    import diffusers

    return getattr(diffusers, cls)(**config)


def _t5_encoder(model_cls: str = "T5EncoderModel", config_cls: str = "T5Config"):
    """T5 v1.1-style encoder over the tiny T5 vocabulary (UMT5 for Wan)."""
    return partial(
        _hf,
        model_cls,
        config_cls,
        vocab_size=len(_t5_vocab()),
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        **_T5,
    )


def _bpe_text_encoder(model_cls: str, config_cls: str, vocab: Callable, tokens: dict, config: dict):
    """A text encoder sized to a BPE vocabulary, with the tokenizer's bos / eos / pad ids."""
    ids = vocab()[0]
    return partial(
        _hf,
        model_cls,
        config_cls,
        vocab_size=len(ids),
        bos_token_id=ids[tokens["bos_token"]],
        eos_token_id=ids[tokens["eos_token"]],
        pad_token_id=ids[tokens["pad_token"]],
        **config,
    )


def _t5_text() -> dict[str, Callable[[], Any]]:
    return {"text_encoder": _t5_encoder(), "tokenizer": _t5_tokenizer}


def _heads(knobs: dict) -> dict:
    """Transformer attention shape from the `width` (inner dim) and `heads` knobs."""
    width, heads = knobs["width"], knobs["heads"]
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")
    return dict(num_attention_heads=heads, attention_head_dim=width // heads, num_layers=knobs["num_layers"])


def _flow_match(**config):
    return partial(_diffusers, "FlowMatchEulerDiscreteScheduler", **config)


def _ltx(knobs: dict) -> dict[str, Callable[[], Any]]:
    """LTX-Video: 8 latent channels; patchify 4 and three 2x stages give the real 32x / 8x compression."""
    latent = 8
    return {
        "transformer": partial(
            _diffusers,
            "LTXVideoTransformer3DModel",
            in_channels=latent,
            out_channels=latent,
            cross_attention_dim=knobs["width"],
            caption_channels=_T5_DIM,
            **_heads(knobs),
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLLTXVideo",
            latent_channels=latent,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            patch_size=4,
            patch_size_t=1,
        ),
        # LTX-Video 0.9's scheduler: resolution-dependent shift.
        "scheduler": _flow_match(
            use_dynamic_shifting=True,
            base_shift=0.95,
            max_shift=2.05,
            base_image_seq_len=1024,
            max_image_seq_len=4096,
            shift_terminal=0.1,
        ),
        **_t5_text(),
    }


def _wan_transformer(knobs: dict, **extra):
    config = dict(
        patch_size=(1, 2, 2),
        in_channels=16,
        out_channels=16,
        text_dim=_T5_DIM,
        freq_dim=32,
        ffn_dim=2 * knobs["width"],
        rope_max_seq_len=32,
        **_heads(knobs),
    )
    return partial(_diffusers, "WanTransformer3DModel", **{**config, **extra})


def _wan(knobs: dict) -> dict[str, Callable[[], Any]]:
    """Wan 2.1 text-to-video: 16 latent channels (the pipeline's latents_mean has 16), 8x / 4x VAE."""
    return {
        "transformer": _wan_transformer(knobs),
        "vae": partial(
            _diffusers, "AutoencoderKLWan", base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1
        ),
        # Wan 2.1's own scheduler choice.
        "scheduler": partial(
            _diffusers,
            "UniPCMultistepScheduler",
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=3.0,
        ),
        "text_encoder": _t5_encoder("UMT5EncoderModel", "UMT5Config"),
        "tokenizer": _t5_tokenizer,
    }


def _clip_image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def _wan_i2v(knobs: dict) -> dict[str, Callable[[], Any]]:
    """Wan 2.1 image-to-video: 36 input channels (noise 16, mask 4, image latents 16), CLIP image tokens."""
    parts = _wan(knobs)
    parts["transformer"] = _wan_transformer(
        knobs, in_channels=36, image_dim=_CLIP_VISION["hidden_size"], added_kv_proj_dim=knobs["width"]
    )
    parts["image_encoder"] = partial(_hf, "CLIPVisionModel", "CLIPVisionConfig", **_CLIP_VISION)
    parts["image_processor"] = _clip_image_processor
    return parts


def _cogvideox(knobs: dict, i2v: bool = False) -> dict[str, Callable[[], Any]]:
    """CogVideoX: 8x / 4x VAE; text-to-video uses sin-cos positions (2B), image-to-video RoPE (5B)."""
    latent = 4
    return {
        "transformer": partial(
            _diffusers,
            "CogVideoXTransformer3DModel",
            in_channels=2 * latent if i2v else latent,
            out_channels=latent,
            time_embed_dim=8,
            text_embed_dim=_T5_DIM,
            sample_width=4,
            sample_height=4,
            sample_frames=9,
            patch_size=2,
            use_rotary_positional_embeddings=i2v,
            **_heads(knobs),
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLCogVideoX",
            block_out_channels=(8, 8, 8, 8),
            latent_channels=latent,
            layers_per_block=1,
            norm_num_groups=2,
            scaling_factor=0.7 if i2v else 1.15258426,
        ),
        "scheduler": partial(
            _diffusers,
            "CogVideoXDDIMScheduler",
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            prediction_type="v_prediction",
            rescale_betas_zero_snr=True,
            timestep_spacing="trailing",
            snr_shift_scale=1.0 if i2v else 3.0,
        ),
        **_t5_text(),
    }


def _mochi(knobs: dict) -> dict[str, Callable[[], Any]]:
    """Mochi: 12 latent channels (its latents_mean has 12), 8x / 6x VAE; group norms need 32 channels."""
    return {
        "transformer": partial(
            _diffusers,
            "MochiTransformer3DModel",
            patch_size=2,
            pooled_projection_dim=16,
            in_channels=12,
            text_embed_dim=_T5_DIM,
            time_embed_dim=4,
            **_heads(knobs),
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLMochi",
            latent_channels=12,
            encoder_block_out_channels=(32, 32, 32, 32),
            decoder_block_out_channels=(32, 32, 32, 32),
            layers_per_block=(1, 1, 1, 1, 1),
        ),
        "scheduler": _flow_match(),
        **_t5_text(),
    }


def _hunyuan_video(knobs: dict) -> dict[str, Callable[[], Any]]:
    """HunyuanVideo: dual- then single-stream blocks; Llama text states plus a pooled CLIP vector."""
    heads = _heads(knobs)
    head_dim = heads["attention_head_dim"]
    if head_dim % 16:
        raise ValueError(f"HunyuanVideo's 3-axis RoPE needs a head dim that is a multiple of 16: {head_dim}")
    rope_t = head_dim // 4
    return {
        "transformer": partial(
            _diffusers,
            "HunyuanVideoTransformer3DModel",
            in_channels=4,
            out_channels=4,
            num_single_layers=knobs["num_single_layers"],
            num_refiner_layers=1,
            mlp_ratio=2.0,
            patch_size=2,
            patch_size_t=1,
            text_embed_dim=_LLAMA["hidden_size"],
            pooled_projection_dim=_CLIP["hidden_size"],
            rope_axes_dim=(rope_t, (head_dim - rope_t) // 2, (head_dim - rope_t) // 2),
            **heads,
        ),
        "vae": partial(
            _diffusers,
            "AutoencoderKLHunyuanVideo",
            latent_channels=4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            norm_num_groups=4,
        ),
        "scheduler": _flow_match(shift=7.0),
        "text_encoder": _bpe_text_encoder("LlamaModel", "LlamaConfig", _llama_vocab, _LLAMA_TOKENS, _LLAMA),
        "tokenizer": _llama_tokenizer,
        "text_encoder_2": _bpe_text_encoder("CLIPTextModel", "CLIPTextConfig", _clip_vocab, _CLIP_TOKENS, _CLIP),
        "tokenizer_2": _clip_tokenizer,
    }


# ---------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class TinyPipeline:
    """How to build one tiny pipeline.

    ``parts`` maps the knobs (defaults in ``knobs``, changed by `build`'s overrides) to a factory
    per component. ``sizes`` are the smallest call sizes that give at least two latent frames, so
    that temporal attention has something to attend to.
    """

    pipeline: str
    parts: Callable[[dict], dict[str, Callable[[], Any]]]
    sizes: dict[str, int]
    knobs: dict[str, int] = field(default_factory=lambda: {"num_layers": 4, "width": 32, "heads": 2})
    image: bool = False  # the stock call needs a conditioning image
    also_loads_as: tuple[str, ...] = ()


TINY_PIPELINES: dict[str, TinyPipeline] = {
    "ltx": TinyPipeline(
        "LTXPipeline",
        _ltx,
        {"num_frames": 9, "height": 32, "width": 32},
        also_loads_as=("LTXImageToVideoPipeline",),
    ),
    "wan": TinyPipeline("WanPipeline", _wan, {"num_frames": 5, "height": 16, "width": 16}),
    "wan-i2v": TinyPipeline(
        "WanImageToVideoPipeline", _wan_i2v, {"num_frames": 5, "height": 16, "width": 16}, image=True
    ),
    "cogvideox": TinyPipeline("CogVideoXPipeline", _cogvideox, {"num_frames": 9, "height": 16, "width": 16}),
    "cogvideox-i2v": TinyPipeline(
        "CogVideoXImageToVideoPipeline",
        partial(_cogvideox, i2v=True),
        {"num_frames": 9, "height": 16, "width": 16},
        image=True,
    ),
    "mochi": TinyPipeline("MochiPipeline", _mochi, {"num_frames": 7, "height": 16, "width": 16}),
    "hunyuan-video": TinyPipeline(
        "HunyuanVideoPipeline",
        _hunyuan_video,
        {"num_frames": 5, "height": 16, "width": 16},
        knobs={"num_layers": 4, "num_single_layers": 2, "width": 32, "heads": 2},
    ),
}

# Smallest valid call sizes per name, and the number of main transformer blocks ("depth").
TINY_SIZES: dict[str, dict[str, int]] = {
    name: {**spec.sizes, "depth": spec.knobs["num_layers"]} for name, spec in TINY_PIPELINES.items()
}


def _spec(name: str) -> TinyPipeline:
    try:
        return TINY_PIPELINES[name]
    except KeyError:
        raise KeyError(f"unknown tiny pipeline {name!r}; known: {sorted(TINY_PIPELINES)}") from None


def _factories(name: str, overrides: dict) -> dict[str, Callable[[], Any]]:
    """Component factories after overrides.

    A knob name (``num_layers``, ``width``, ...) changes the knob; a component name with a dict
    updates that component's config keywords (e.g. ``transformer={"qk_norm": None}``).
    """
    spec = _spec(name)
    knobs = dict(spec.knobs)
    for key in [k for k in overrides if k in knobs]:
        knobs[key] = int(overrides[key])
    parts = spec.parts(knobs)
    for key, value in overrides.items():
        if key in knobs:
            continue
        if key not in parts or not isinstance(value, dict) or not isinstance(parts[key], partial):
            raise TypeError(
                f"{name}: unknown override {key!r}; knobs: {sorted(knobs)}, component configs: {sorted(parts)}"
            )
        factory = parts[key]
        parts[key] = partial(factory.func, *factory.args, **{**factory.keywords, **value})
    return parts


def build(name: str, folder: str | os.PathLike, **overrides) -> pathlib.Path:
    """Build the named tiny pipeline with fixed seeds and save it to folder; returns folder.

    torch.manual_seed(0) runs before each component, so a build is bitwise reproducible and a
    component's weights do not depend on the components built before it.
    """
    import diffusers

    folder = pathlib.Path(folder)
    components = {}
    for part, factory in _factories(name, overrides).items():
        torch.manual_seed(0)
        components[part] = factory()
    pipe = getattr(diffusers, _spec(name).pipeline)(**components)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _cache_key(name: str, overrides: dict) -> str:
    import diffusers
    import transformers

    blob = json.dumps(
        {
            "name": name,
            "overrides": overrides,
            "format": _FORMAT,
            "versions": [torch.__version__, diffusers.__version__, transformers.__version__],
        },
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def cached(name: str, cache_dir: str | os.PathLike | None = None, **overrides) -> pathlib.Path:
    """Folder of the named tiny pipeline under cache_dir, built on first use.

    cache_dir defaults to $STG_CACHE or ~/.cache/stg-studio. A folder holding model_index.json is
    reused. Its name is the pipeline name and a short hash of the overrides (and of the library
    versions, whose weight initialisation may change). The build goes to a temporary folder that
    is renamed atomically, so two processes never see a half-written folder.
    """
    _spec(name)
    default = os.environ.get("STG_CACHE") or pathlib.Path.home() / ".cache" / "stg-studio"
    root = pathlib.Path(cache_dir or default)
    target = root / f"{name}-{_cache_key(name, overrides)}"
    if (target / "model_index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        build(name, tmp, **overrides)
        tmp.chmod(0o755)  # mkdtemp made it private; the cache is not
        if target.exists() and not (target / "model_index.json").is_file():
            shutil.rmtree(target, ignore_errors=True)  # left by something else, never by this function
        try:
            os.rename(tmp, target)  # atomic on one file system; fails if another process got there first
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def stock_image(height: int, width: int):
    """A deterministic colour-gradient RGB image for image-to-video calls."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 128 + 0 * x], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def stock_call_kwargs(name: str, steps: int = 2, seed: int = 0, **extra) -> dict[str, Any]:
    """Arguments of a plain call of the named tiny pipeline at its smallest sizes.

    Image-to-video names get a conditioning image; `extra` replaces or adds arguments.
    """
    spec = _spec(name)
    kwargs: dict[str, Any] = dict(
        prompt="a red fox",
        negative_prompt="blurry",
        num_inference_steps=steps,
        guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
        **spec.sizes,
    )
    if spec.image:
        kwargs["image"] = stock_image(spec.sizes["height"], spec.sizes["width"])
    kwargs.update(extra)
    return kwargs
