"""Benchmark: what STG costs per denoising step, next to its compute floor.

    python -m stg.bench                                   # CPU, transformer-heavy tiny LTX (12 blocks, width 128, STG at 9)
    python -m stg.bench --config shapes                   # CPU, the trained shapes model at its preset's size and recipe
    python -m stg.bench --config ltx-video-2b --device cuda   # the real LTX-Video 2B transformer, random weights, bf16

Ratios are measured in one run, configurations interleaved, medians over repeats after a warm-up. Prints a
readable table, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import contextmanager

import torch
from diffusers import LTXVideoTransformer3DModel
from torch.utils.flop_counter import FlopCounterMode

from . import Backend, Guidance, presets, tiny
from .denoiser import GuidedDenoiser, Progress, passes_per_step
from .families import FAMILIES
from .perturb import install

PROMPT = "a red fox runs through fresh snow in a pine forest"
TRAINED = ("shapes", "lab")  # the offline models trained here
LTX_2B = dict(
    in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32, attention_head_dim=64,
    cross_attention_dim=2048, num_layers=28, caption_channels=4096, qk_norm="rms_norm_across_heads",
)


def floors(depth: int, block: int) -> dict:
    """Passes per step relative to the CFG baseline, as the denoiser plans them (the perturbed pass costs (N-k)/N
    with a shared prefix)."""
    cfg, stg = Guidance(3.0), Guidance(3.0, 1.0, "stg-a", [block])

    def ratio(panels, baseline, share_prefix=True):
        return passes_per_step(panels, 1, depth, True, share_prefix) / passes_per_step(baseline, 1, depth, True)

    return {"stg_over_cfg": ratio([stg], [cfg]), "compare_over_two_cfg": ratio([cfg, stg], [cfg, cfg]),
            "stg_over_cfg_plain": ratio([stg], [cfg], False),
            "compare_over_two_cfg_plain": ratio([cfg, stg], [cfg, cfg], False)}


def interleaved(runs: dict, repeats: int) -> dict:
    """Median seconds per step of each named run; one warm-up each, then rounds in turn."""
    samples = {name: [] for name in runs}
    for name, run in runs.items():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].extend(run())
    return {name: statistics.median(values) for name, values in samples.items()}


def _step_times(call) -> list[float]:
    stamps = []
    call(lambda *_: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def cpu_pipeline(args) -> dict:
    """Whole-pipeline step times through the backend, and the stock diffusers pipeline for the overhead: on the
    transformer-heavy tiny LTX (random weights, STG-A at 3/4 of the depth), or on a trained offline model (its
    preset's prompt, size, steps and recipe)."""
    if args.config == "tiny-heavy":
        folder = tiny.cached("ltx", num_layers=args.layers or 12, width=args.width)
        backend = Backend.load(str(folder), device=args.device)
        prompt, w = PROMPT, 3.0
        block = args.block if args.block is not None else backend.depth * 3 // 4
        stg = Guidance(w, 1.0, "stg-a", [block])
    else:
        backend = Backend.load(args.config, device=args.device)
        folder, defaults = backend.preset.source, backend.preset.defaults
        prompt, w = backend.preset.examples[0], defaults["cfg_scale"]
        block = args.block if args.block is not None else defaults["stg_blocks"][0]
        stg = Guidance(w, defaults["stg_scale"], defaults["stg_mode"], [block], defaults["rescale"])
    stock = type(backend.pipe).from_pretrained(folder, torch_dtype=backend.dtype).to(args.device)
    for pipe in (backend.pipe, stock):
        pipe.set_progress_bar_config(disable=True)
    size = dict(num_frames=args.frames, height=args.height, width=args.width_px, steps=args.steps)
    cfg = Guidance(w)

    def through_backend(guidances, **speed):
        return lambda: _step_times(lambda cb: backend.run(prompt, guidances, callback=cb, **size, **speed))

    forwards = {}

    def cached(level):
        """A whole comparison's mean step (cached steps differ from one another), and the forwards it ran."""
        def call(cb):
            forwards[level] = [v.settings["forwards"] for v in backend.run(prompt, [cfg, stg], callback=cb,
                                                                            cache=level, **size)]
        return lambda: [statistics.mean(_step_times(call))]

    def stock_run():
        def call(cb):
            stock(prompt, num_inference_steps=args.steps, num_frames=args.frames, height=args.height,
                  width=args.width_px, guidance_scale=w, generator=torch.Generator("cpu").manual_seed(0), output_type="latent",
                  callback_on_step_end=lambda *a: (cb(), {})[1])
        return _step_times(call)

    times = interleaved({
        "cfg": through_backend([cfg]),
        "stg": through_backend([stg]),
        "stg_plain": through_backend([stg], share_prefix=False),
        "two_cfg": through_backend([cfg, cfg]),
        "compare": through_backend([cfg, stg]),
        "compare_plain": through_backend([cfg, stg], share_prefix=False),
        "stock_cfg": stock_run,
        **{f"compare_cache_{level:g}": cached(level) for level in args.cache},
    }, args.repeats)
    return report(times, backend.depth, block, args, extra={
        "stg_off_over_stock": times["cfg"] / times["stock_cfg"],
        "compare_over_stock": times["compare"] / times["stock_cfg"],
        "cache": {f"{level:g}": cache_figures(times, f"compare_cache_{level:g}", forwards[level], backend.depth, block)
                  for level in args.cache},
    })


def cache_figures(times: dict, name: str, forwards: list[dict], depth: int, block: int) -> dict:
    """A cached comparison against the uncached one and one stock CFG video; its floor: the passes it ran over the
    passes uncached (a reused row still runs its first block; a perturbed row from its block k on), and the forwards
    reused per row kind, over both panels."""
    kinds: dict = {}
    for panel in forwards:
        for kind, count in panel.items():
            total = kinds.setdefault(kind, {"ran": 0, "reused": 0})
            total["ran"] += count["ran"]
            total["reused"] += count["reused"]
    cost = {kind: (depth - block) / depth if kind == "perturbed" else 1.0 for kind in kinds}
    uncached = sum(cost[k] * (c["ran"] + c["reused"]) for k, c in kinds.items())
    run = sum(cost[k] * c["ran"] + c["reused"] / depth for k, c in kinds.items())
    return {"over_uncached": times[name] / times["compare"], "over_stock_cfg": times[name] / times["stock_cfg"],
            "floor_over_uncached": run / uncached, "forwards": kinds}


@contextmanager
def _peak_memory(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    peak = {}
    yield peak
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak["bytes"] = torch.cuda.max_memory_allocated()


def _ltx_inputs(args, device, dtype):
    """The LTX-Video transformer's inputs for a batch of panels (random latents and text states), and the tokens."""
    frames, height, width = (args.frames - 1) // 8 + 1, args.height // 32, args.width_px // 32
    tokens = frames * height * width

    def inputs(panels):
        g = torch.Generator(device).manual_seed(0)
        return dict(
            hidden_states=torch.randn(panels, tokens, 128, generator=g, device=device, dtype=dtype),
            encoder_hidden_states=torch.randn(panels, 128, 4096, generator=g, device=device, dtype=dtype),
            encoder_attention_mask=torch.ones(panels, 128, device=device, dtype=torch.long),
            timestep=torch.full((panels,), 500.0, device=device),
            num_frames=frames, height=height, width=width, rope_interpolation_scale=(8 / 25, 32, 32), return_dict=False,
        )

    return inputs, tokens


def transformer_steps(args) -> dict:
    """Denoiser step times on the real LTX-Video 2B transformer from its config (random weights)."""
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = dict(LTX_2B, num_layers=args.layers or LTX_2B["num_layers"])
    torch.manual_seed(0)
    with torch.device(device):
        model = LTXVideoTransformer3DModel.from_config(config).to(dtype).eval()
    family = FAMILIES["ltx-video"]
    install(model, family.blocks)
    block = args.block if args.block is not None else min(19, config["num_layers"] - 1)
    inputs, tokens = _ltx_inputs(args, device, dtype)
    negative = {"encoder_hidden_states": torch.randn(1, 128, 4096, device=device, dtype=dtype),
                "encoder_attention_mask": torch.ones(1, 128, device=device, dtype=torch.long)}
    cfg, stg = Guidance(3.0), Guidance(3.0, 1.0, "stg-a", [block], rescale=0.7)
    flops, memory = {}, {}

    def stepper(name, panels, **speed):
        denoiser = GuidedDenoiser(model, family, panels, negative, Progress(steps=10**9), **speed)
        batch = inputs(len(panels))

        def run():
            times = []
            with torch.inference_mode():
                for _ in range(args.steps):
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    with _peak_memory(device) as peak:
                        denoiser(**batch)
                    times.append(time.perf_counter() - start)
                    memory[name] = max(memory.get(name, 0), peak.get("bytes", 0))
            return times

        if name not in flops:
            with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                denoiser(**batch)
            flops[name] = counter.get_total_flops()
        return run

    runs = {
        "cfg": stepper("cfg", [cfg]),
        "stg": stepper("stg", [stg]),
        "stg_plain": stepper("stg_plain", [stg], share_prefix=False),
        "two_cfg": stepper("two_cfg", [cfg, cfg]),
        "compare": stepper("compare", [cfg, stg]),
        "compare_plain": stepper("compare_plain", [cfg, stg], share_prefix=False),
    }
    times = interleaved(runs, args.repeats)
    extra = {
        "tokens": tokens,
        "tflops_per_s": {k: flops[k] / times[k] / 1e12 for k in times},
    }
    if device.type == "cuda":
        extra["peak_memory_gib"] = {k: v / 2**30 for k, v in memory.items()}
        extra["compare_memory_over_cfg"] = memory["compare"] / memory["cfg"]
        extra["gpu"] = torch.cuda.get_device_name(device)
    return report(times, config["num_layers"], block, args, extra)


def report(times: dict, depth: int, block: int, args, extra: dict) -> dict:
    measured = {
        "stg_over_cfg": times["stg"] / times["cfg"],
        "compare_over_two_cfg": times["compare"] / times["two_cfg"],
        "stg_over_cfg_plain": times["stg_plain"] / times["cfg"],
        "compare_over_two_cfg_plain": times["compare_plain"] / times["two_cfg"],
    }
    floor = floors(depth, block)
    return {
        "config": args.config, "device": args.device, "depth": depth, "stg_block": block,
        "frames": args.frames, "height": args.height, "width": args.width_px, "steps": args.steps,
        "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
        "seconds_per_step": times, "ratios": measured, "floors": floor,
        "over_floor": {k: measured[k] / floor[k] - 1 for k in measured},
        **extra,
    }


def print_table(result: dict) -> None:
    print(f"{result['config']} on {result['device']}: {result['depth']} blocks, STG at block {result['stg_block']}, "
          f"{result['frames']} frames {result['width']}x{result['height']}, medians of {result['repeats']} runs")
    print(f"{'run':<16}{'s/step':>10}")
    for name, seconds in result["seconds_per_step"].items():
        print(f"{name:<16}{seconds:>10.4f}")
    print(f"\n{'ratio':<30}{'measured':>10}{'floor':>10}{'over floor':>12}")
    for name, value in result["ratios"].items():
        print(f"{name:<30}{value:>10.3f}{result['floors'][name]:>10.3f}{result['over_floor'][name]:>+11.1%}")
    if "stg_off_over_stock" in result:
        print(f"\nSTG off through the backend / stock diffusers: {result['stg_off_over_stock']:.3f}")
        print(f"comparison / one stock CFG video: {result['compare_over_stock']:.3f}")
    for level, figures in result.get("cache", {}).items():
        reused = ", ".join(f"{k} {c['reused']}/{c['ran'] + c['reused']}" for k, c in figures["forwards"].items())
        print(f"cache {level}: comparison / uncached {figures['over_uncached']:.3f} (floor "
              f"{figures['floor_over_uncached']:.3f}), / one stock CFG video {figures['over_stock_cfg']:.3f}; "
              f"forwards reused: {reused}")
    if "peak_memory_gib" in result:
        print("\npeak GPU memory (GiB): " + ", ".join(f"{k} {v:.2f}" for k, v in result["peak_memory_gib"].items()))
        print(f"compare / one CFG generation: {result['compare_memory_over_cfg']:.3f}")
    if "tflops_per_s" in result:
        print("TFLOP/s: " + ", ".join(f"{k} {v:.2f}" for k, v in result["tflops_per_s"].items()))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m stg.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["tiny-heavy", *TRAINED, "ltx-video-2b"], default="tiny-heavy",
                        help="the transformer-heavy tiny LTX, a trained offline model (at its preset's size, steps and "
                             "recipe), or the LTX-Video 2B transformer alone")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, help="transformer blocks (default: 12 tiny, 28 for LTX-Video 2B)")
    parser.add_argument("--width", type=int, default=128, help="tiny transformer inner dim")
    parser.add_argument("--block", type=int, help="STG block (default: 3/4 of the depth tiny, 19 for LTX-Video 2B)")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width-px", type=int, dest="width_px")
    parser.add_argument("--steps", type=int, help="denoising steps (default: 6; a trained model's preset's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", type=float, nargs="*", default=[0.05, 0.1, 0.2], metavar="T",
                        help="step cache thresholds to time the comparison at (not on ltx-video-2b; none: leave it out)")
    args = parser.parse_args(argv)
    real = args.config == "ltx-video-2b"
    defaults = dict(steps=6, num_frames=121 if real else 25, height=512 if real else 384, width=768 if real else 384)
    if args.config in TRAINED:
        defaults = presets.get(args.config).defaults
    args.steps = args.steps or defaults["steps"]
    args.frames = args.frames or defaults["num_frames"]
    args.height = args.height or defaults["height"]
    args.width_px = args.width_px or defaults["width"]
    result = transformer_steps(args) if real else cpu_pipeline(args)
    print_table(result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
