"""The engine against stock diffusers and an independent reference, on every family's tiny model (CPU, fp32)."""

from __future__ import annotations

import inspect
import threading
from contextlib import contextmanager, nullcontext

import diffusers
import numpy as np
import pytest
import torch
from diffusers.hooks.layer_skip import AttentionScoreSkipFunctionMode
from PIL import Image
from faults import fail_then_cancel, in_two_threads
from tiny_cases import (  # noqa: F401
    AUDIO_TOLERANCE, BY_ID, CASE_IDS, CASES, NEGATIVE, PROMPT, SEED, Case, assert_frames_close, assert_same_video,
    cfg_scale, folders, loaded, request, stock_call,
)

import stg

# 1. CFG is stock CFG -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_cfg_equals_stock_diffusers(case, loaded):
    backend, stock = loaded(case)
    options = request(case)
    ours = backend.generate(PROMPT, stg.Guidance(cfg_scale(case)), negative_prompt=NEGATIVE, **options)
    negative = {"negative_prompt": NEGATIVE} if case.cfg else {}
    reference = stock_call(case, stock, options, cfg_scale(case), prompt=PROMPT, **negative)
    assert_same_video(case, ours, reference, stock)
    assert ours.frames.std() > 0 and ours.seed == SEED


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_smallest_cfg_scale_equals_stock_and_below_it_is_refused(case, loaded):
    """Stock pipelines switch CFG off at guidance_scale <= 1 (those with a guider at 1 only), so a w below 1 mostly
    gives the w = 1 video there: w = 1, the smallest w allowed, is that video; a w below it is refused by name, with
    its range."""
    backend, stock = loaded(case)
    options = request(case)
    ours = backend.generate(PROMPT, stg.Guidance(1.0), negative_prompt=NEGATIVE, **options)
    negative = {"negative_prompt": NEGATIVE} if case.cfg else {}
    reference = stock_call(case, stock, options, 1.0, prompt=PROMPT, **negative)
    assert_same_video(case, ours, reference, stock)
    if case.cfg and not case.guider:  # what w below 1 would have meant: nothing else than w = 1
        below = stock_call(case, stock, options, 0.5, prompt=PROMPT, **negative)
        np.testing.assert_array_equal(below.frames, reference.frames)
    for w in (0.0, 0.5, 0.999):
        with pytest.raises(ValueError, match=rf"^cfg_scale must be a finite number in \[1, 20\], got {w}$"):
            stg.Guidance(w)


# 2. STG equals an independent reference ------------------------------------------------------------------
@contextmanager
def plainly_perturbed(transformer, case: Case, mode: str, blocks):
    """The chosen blocks perturbed for the whole batch by replacing their forward for the duration."""
    patched = []
    for index in blocks:
        block = getattr(transformer, case.stack)[index]
        if mode == "stg-r":
            module, signature = block, inspect.signature(block.forward)

            def forward(*args, _signature=signature, **kwargs):
                bound = _signature.bind(*args, **kwargs).arguments
                streams = tuple(bound[name] for name in case.streams)
                return streams if len(streams) > 1 else streams[0]
        else:
            module = getattr(block, case.attention)
            original, signature = module.forward, inspect.signature(module.forward)

            def forward(*args, _module=module, _original=original, _signature=signature, **kwargs):
                if not case.joint:  # diffusers' own identity attention map: SDPA returns V
                    with AttentionScoreSkipFunctionMode():
                        return _original(*args, **kwargs)
                output = _original(*args, **kwargs)  # text tokens as normal, video tokens get their own V
                hidden = _signature.bind(*args, **kwargs).arguments["hidden_states"]
                return (_module.to_out[1](_module.to_out[0](_module.to_v(hidden))),) + tuple(output[1:])
        module.forward = forward
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


class ReferenceTransformer:
    """Each pass on its own, the formula by hand; plugged into a stock pipeline whose own CFG is off.

    One per expert: `expert` 1 uses cfg_scale_2 where given; the experts of a run share its step count.
    """

    def __init__(self, transformer, case: Case, guidance: stg.Guidance, negative: dict, steps: int, counter: list,
                 expert: int = 0):
        self.transformer, self.case, self.g, self.negative, self.steps = transformer, case, guidance, negative, steps
        self.counter, self.expert = counter, expert

    def __getattr__(self, name):
        return getattr(self.transformer, name)

    def cache_context(self, *args, **kwargs):
        return nullcontext()

    def __call__(self, **kwargs):
        g, run = self.g, lambda **kw: self.transformer(**kw)[0].float()
        w = g.cfg_scale_2 if self.expert == 1 and g.cfg_scale_2 is not None else g.cfg_scale
        eps_c = run(**kwargs)
        eps = eps_c
        if self.case.cfg and w != 1:
            eps_u = run(**{**kwargs, **{k: v.to(kwargs[k]) for k, v in self.negative.items()}})
            eps = eps_u + w * (eps_c - eps_u)
        start, end = g.window
        if g.stg_scale and start * self.steps <= self.counter[0] < end * self.steps:
            with plainly_perturbed(self.transformer, self.case, g.stg_mode, g.stg_blocks):
                eps_p = run(**kwargs)
            eps = eps + g.stg_scale * (eps_c - eps_p)
        if g.rescale:
            dims = list(range(1, eps.ndim))
            factor = eps_c.std(dim=dims, keepdim=True) / eps.std(dim=dims, keepdim=True)
            eps = eps * (g.rescale * factor + (1 - g.rescale))
        self.counter[0] += 1
        return (eps,)


class PlainSkip:
    """For a model with STG of its own: its perturbed pass (STG blocks given) made by plain block patching."""

    def __init__(self, transformer, case: Case, mode: str):
        self.transformer, self.case, self.mode = transformer, case, mode

    def __getattr__(self, name):
        return getattr(self.transformer, name)

    def __call__(self, **kwargs):
        blocks = kwargs.pop("spatio_temporal_guidance_blocks")
        with plainly_perturbed(self.transformer, self.case, self.mode, blocks or ()):
            return self.transformer(spatio_temporal_guidance_blocks=None, **kwargs)


def rebuilt(stock, **components):
    """The stock pipeline over other components, with its registered settings (e.g. Wan 2.2's boundary_ratio)."""
    accepted = inspect.signature(type(stock).__init__).parameters
    settings = {k: v for k, v in stock.config.items() if k in accepted and k not in stock.components}
    pipe = type(stock)(**{**stock.components, **components}, **settings)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def own_stg_video(case: Case, stock, guidance: stg.Guidance, options: dict):
    """The stock pipeline's own STG: stg-a is the model's; stg-r patches its perturbed pass's blocks plainly."""
    pipe = stock if guidance.stg_mode == "stg-a" else rebuilt(stock, transformer=PlainSkip(stock.transformer, case, "stg-r"))
    own = dict(stg_scale=guidance.stg_scale, spatio_temporal_guidance_blocks=list(guidance.stg_blocks),
               guidance_rescale=guidance.rescale)
    return stock_call(case, pipe, options, guidance.cfg_scale, prompt=PROMPT, negative_prompt=NEGATIVE, **own)


def reference_video(case: Case, stock, guidance: stg.Guidance, options: dict):
    if case.own_stg:
        return own_stg_video(case, stock, guidance, options)
    encode = dict(prompt=PROMPT, device="cpu")
    together = case.cfg and "negative_prompt" in inspect.signature(stock.encode_prompt).parameters
    if together:
        encode.update(negative_prompt=NEGATIVE, do_classifier_free_guidance=True)
    defaults = inspect.signature(type(stock).__call__).parameters
    if "max_sequence_length" in defaults:
        encode["max_sequence_length"] = defaults["max_sequence_length"].default
    with torch.no_grad():
        encoded = dict(zip(case.encoded, stock.encode_prompt(**encode)))
        negative_encoded = encoded if together or not case.cfg else \
            dict(zip(case.encoded, stock.encode_prompt(**{**encode, "prompt": NEGATIVE})))
    negative = {target: negative_encoded[source] for target, source in case.negatives}
    positive = {k: v for k, v in encoded.items() if not k.startswith("negative_")}
    counter = [0]
    experts = {name: ReferenceTransformer(getattr(stock, name), case, guidance, negative, options["steps"], counter, k)
               for k, name in enumerate(case.experts)}
    if case.guider:
        experts["guider"] = stock.guider.new(enabled=False)
    pipe = rebuilt(stock, **experts)
    out = stock_call(case, pipe, options, 1.0 if case.cfg else guidance.cfg_scale, **positive)
    assert counter[0] == options["steps"]
    return out


STG_SETTINGS = [("stg-r", "middle", 0.0), ("stg-r", "last", 0.7), ("stg-a", "middle", 0.7), ("stg-a", "last", 0.0)]


@pytest.mark.parametrize("mode,where,rescale", STG_SETTINGS, ids=["-".join(map(str, s)) for s in STG_SETTINGS])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_stg_equals_reference(case, mode, where, rescale, loaded):
    backend, stock = loaded(case)
    block = backend.depth // 2 if where == "middle" else backend.depth - 1
    guidance = stg.Guidance(cfg_scale(case), stg_scale=2.0, stg_mode=mode, stg_blocks=[block], rescale=rescale)
    options = request(case, roomy=True)
    ours = backend.generate(PROMPT, guidance, negative_prompt=NEGATIVE, **options)
    assert_same_video(case, ours, reference_video(case, stock, guidance, options), stock)
    plain = backend.generate(PROMPT, stg.Guidance(cfg_scale(case)), negative_prompt=NEGATIVE, **options)
    assert np.abs(ours.frames.astype(int) - plain.frames).max() > 1, "STG had no visible effect"


def test_stg_window_and_several_blocks_equal_reference(loaded):
    case = CASES[0]
    backend, stock = loaded(case)
    guidance = stg.Guidance(3.0, stg_scale=1.5, stg_mode="stg-a", stg_blocks=[1, 3], window=(0.3, 0.7))
    options = request(case, steps=5)
    ours = backend.generate(PROMPT, guidance, negative_prompt=NEGATIVE, **options)
    assert_same_video(case, ours, reference_video(case, stock, guidance, options), stock)


# 3. compare == two generates -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_compare_equals_two_generates(case, loaded):
    backend, _ = loaded(case)
    options = request(case, negative_prompt=NEGATIVE)
    left = stg.Guidance(cfg_scale(case), **case.extras)
    right = stg.Guidance(cfg_scale(case) + 1, stg_scale=1.0, stg_mode="stg-a", stg_blocks=[1], rescale=0.7, **case.extras)
    cfg_video, stg_video = backend.compare(PROMPT, left, right, **options)
    for both, alone in ((cfg_video, backend.generate(PROMPT, left, **options)),
                        (stg_video, backend.generate(PROMPT, right, **options))):
        assert_frames_close(both.frames, alone.frames / 255)
        if case.sound:
            assert np.abs(both.audio - alone.audio).max() <= AUDIO_TOLERANCE
    assert cfg_video.settings["guidance"] == left.as_dict() and stg_video.settings["guidance"] == right.as_dict()


# 4. nothing leaks ----------------------------------------------------------------------------------------
# The new families beside the first: sound and modality isolation, two experts, a guider and joint attention.
STATE_CASES = [CASES[0], BY_ID["ltx2:LTX2Pipeline"], BY_ID["wan2.2:WanPipeline"], BY_ID["hunyuan-video-1.5:HunyuanVideo15Pipeline"]]
STATE_IDS = [c.id for c in STATE_CASES]


def model_state(pipe, case: Case) -> dict:
    """Every module's hooks, processors and forward, and every parameter's bytes, of every expert."""
    state = {}
    for expert in case.experts:
        transformer = getattr(pipe, expert)
        for name, module in transformer.named_modules():
            registry = getattr(module, "_diffusers_hook", None)
            state[f"{expert}.{name}"] = (
                tuple(registry.hooks) if registry is not None else (),
                type(getattr(module, "processor", None)).__name__,
                getattr(module.forward, "__func__", module.forward).__qualname__,
            )
        for name, tensor in transformer.state_dict().items():
            state[f"param:{expert}.{name}"] = tensor.numpy().tobytes()
    return state


def outputs(video: stg.Video) -> tuple:
    return video.frames, video.audio


@pytest.mark.parametrize("case", STATE_CASES, ids=STATE_IDS)
def test_no_state_leaks_between_requests(case, loaded):
    backend, _ = loaded(case)
    extras = case.extras
    plain_guidance = stg.Guidance(cfg_scale(case), **extras)
    options = request(case, negative_prompt=NEGATIVE)
    before_state = model_state(backend.pipe, case)
    before = outputs(backend.generate(PROMPT, plain_guidance, **options))
    stg_guidance = stg.Guidance(cfg_scale(case), stg_scale=1.0, stg_mode="stg-r", stg_blocks=[1, 2], **extras)

    backend.generate(PROMPT, stg_guidance, **options)

    calls = []
    block = getattr(getattr(backend.pipe, case.experts[-1]), case.stack)[2]  # the last expert runs the last steps

    def fault(module, args, kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("fault injected in block 2")

    fail_then_cancel(block.register_forward_pre_hook(fault, with_kwargs=True),
                     lambda: backend.generate(PROMPT, stg_guidance, **options),
                     lambda stop: backend.compare(PROMPT, plain_guidance, stg_guidance, callback=stop, **options))

    for got, expected in zip(outputs(backend.generate(PROMPT, plain_guidance, **options)), before):
        np.testing.assert_array_equal(got, expected)
    assert model_state(backend.pipe, case) == before_state


# 5. threads ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", STATE_CASES, ids=STATE_IDS)
def test_two_threads_get_what_serial_calls_get(case, loaded):
    backend, _ = loaded(case)
    options = request(case, negative_prompt=NEGATIVE)
    extras = case.extras
    w = cfg_scale(case)
    settings = [stg.Guidance(w, 1.0, "stg-a", [1]), stg.Guidance(w + 1, 2.0, "stg-r", [2, 3], rescale=0.7, **extras)]
    serial = [outputs(backend.generate(PROMPT, g, **options)) for g in settings]
    results = in_two_threads(lambda i: outputs(backend.generate(PROMPT, settings[i], **options)))
    for got, expected in zip(results, serial):
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_two_requests_never_decode_at_once_through_a_stateful_autoencoder(loaded):
    """Wan's VAE keeps its causal feature cache on the module: two decodes at once would mix their frames. Each
    decode here waits (a while) for the other to enter too, which only happens if nothing keeps them apart."""
    case = BY_ID["wan2.2:WanPipeline"]
    backend, _ = loaded(case)
    options = request(case, negative_prompt=NEGATIVE)
    settings = [stg.Guidance(cfg_scale(case)), stg.Guidance(cfg_scale(case), 2.0, "stg-r", [2])]
    serial = [backend.generate(PROMPT, g, **options).frames for g in settings]
    meeting, inside, overlaps = threading.Barrier(2), set(), []

    def wait_for_the_other(module, args):
        if threading.get_ident() not in inside:
            inside.add(threading.get_ident())
            try:
                meeting.wait(timeout=1.0)
                overlaps.append(1)
            except threading.BrokenBarrierError:
                pass

    results = [None, None]

    def worker(i):
        results[i] = backend.generate(PROMPT, settings[i], **options).frames

    handle = backend.pipe.vae.decoder.register_forward_pre_hook(wait_for_the_other)
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        handle.remove()
    for got, expected in zip(results, serial):
        np.testing.assert_array_equal(got, expected)
    assert not overlaps


# 5b. the request pipeline is the loaded one ---------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_request_pipeline_keeps_every_setting_and_wraps_every_transformer(case, loaded):
    backend, _ = loaded(case)
    pipe, _, _ = backend.prepare(PROMPT, [stg.Guidance(cfg_scale(case))], **request(case))
    autoencoders = [name for name in backend.pipe.components if name.endswith("vae")]
    wrapped = (*case.experts, *autoencoders)
    loaded_config = {k: v for k, v in backend.pipe.config.items() if k not in wrapped}
    assert {k: v for k, v in pipe.config.items() if k not in wrapped} == loaded_config
    for name in case.experts:
        assert type(getattr(pipe, name)).__name__ == "GuidedDenoiser"
        assert getattr(pipe, name).transformer is getattr(backend.pipe, name)
    assert autoencoders
    for name in autoencoders:
        assert type(getattr(pipe, name)).__name__ == "OneRequestAtATime"
        assert getattr(pipe, name).autoencoder is getattr(backend.pipe, name)


# 6. bad settings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: stg.Guidance(3.0, 1.0, "stg-r", [4]), "stg_blocks"),
        (lambda: stg.Guidance(3.0, 1.0, "stg-x", [1]), "stg_mode"),
        (lambda: stg.Guidance(-1.0), "cfg_scale"),
        (lambda: stg.Guidance(float("inf")), "cfg_scale"),
        (lambda: stg.Guidance(3.0, float("nan"), "stg-r", [1]), "stg_scale"),
        (lambda: stg.Guidance(3.0, -0.5, "stg-r", [1]), "stg_scale"),
        (lambda: stg.Guidance(3.0, rescale=1.5), "rescale"),
        (lambda: stg.Guidance(3.0, window=(0.6, 0.4)), "window"),
        (lambda: stg.Guidance(3.0, window=(-0.1, 0.5)), "window"),
        (lambda: stg.Guidance(3.0, 1.0, "stg-r", ["x"]), "stg_blocks"),
    ],
)
def test_bad_guidance_is_refused_before_any_work(make, field, loaded):
    backend, _ = loaded(CASES[0])
    steps = []
    with pytest.raises(ValueError, match=field):
        backend.generate(PROMPT, make(), callback=lambda step, total: steps.append(step), **request(CASES[0]))
    assert steps == []


@pytest.mark.parametrize(
    "change,field,allowed",
    [
        (dict(num_frames=10), "num_frames", "8n+1"),
        (dict(height=48), "height", "multiple of 32"),
        (dict(width=1000000), "width", "multiple of 32"),
        (dict(steps=1), "steps", "[2, "),
        (dict(seed=-1), "seed", "[0, "),
        (dict(prompt="   "), "prompt", "visible character"),
        (dict(prompt="\u200b"), "prompt", "visible character"),
        (dict(prompt="a fox\x00"), "prompt", "control characters"),
        (dict(negative_prompt="\x1b[31m"), "negative_prompt", "control characters"),
        (dict(prompt="x" * 5000), "prompt", "at most"),
        (dict(image=Image.new("RGB", (32, 32))), "image", "text only"),
    ],
)
def test_bad_request_is_refused_before_any_work(change, field, allowed, loaded):
    backend, _ = loaded(CASES[0])
    options = {**request(CASES[0]), **change}
    prompt = options.pop("prompt", PROMPT)
    steps = []
    with pytest.raises(ValueError) as error:
        backend.generate(prompt, stg.Guidance(3.0), callback=lambda step, total: steps.append(step), **options)
    assert field in str(error.value) and allowed in str(error.value)
    assert steps == []


def test_block_out_of_range_names_the_depth(loaded):
    backend, _ = loaded(CASES[0])
    with pytest.raises(ValueError, match=r"stg_blocks \[7\].*4 blocks.*0-3"):
        backend.generate(PROMPT, stg.Guidance(3.0, 1.0, "stg-r", [7]), **request(CASES[0]))


def test_image_to_video_needs_an_image(loaded):
    case = CASES[1]
    backend, _ = loaded(case)
    options = request(case)
    options.pop("image")
    with pytest.raises(ValueError, match="image is required"):
        backend.generate(PROMPT, stg.Guidance(3.0), **options)


def test_unsupported_pipeline_lists_supported(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ValueError, match="not supported; supported: .*LTXPipeline"):
        stg.Backend.load(str(tmp_path))


def test_a_family_without_a_preset_is_refused_by_name(monkeypatch):
    from dataclasses import replace

    from stg import families

    extra = replace(families.FAMILIES["mochi"], name="new-family", pipelines={"NewFamilyPipeline": False})
    monkeypatch.setitem(families.FAMILIES, "new-family", extra)
    with pytest.raises(ValueError, match=r"family 'new-family' has no preset for NewFamilyPipeline: add one to "
                                         r"presets/new-family.json"):
        stg.Backend.load("tiny")


def test_tiny_preset_loads_offline_with_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("STG_CACHE", str(tmp_path))
    backend = stg.Backend.load("tiny")
    backend.pipe.set_progress_bar_config(disable=True)
    video = backend.generate(PROMPT, stg.Guidance(3.0, 1.0, "stg-a", [2], 0.7), steps=2, num_frames=9, height=32, width=32)
    assert video.frames.shape == (9, 32, 32, 3) and video.frames.dtype == np.uint8
    assert video.fps == backend.preset.fps
    settings = video.settings
    assert settings["model"] == "tiny" and settings["family"] == "ltx-video" and settings["seed"] == 0
    assert settings["guidance"]["stg_blocks"] == [2] and settings["versions"]["diffusers"] == diffusers.__version__
