"""Train the shapes model from scratch: `python -m stg.shapes.train --out DIR [--device cuda]`.

The trainer serves any grammar-trained model: a `World` names its scenes, renderer, components and judge (the lab
model's is in `stg.lab.train`). Two stages on clips rendered on the fly from fixed seeds: the VAE (reconstruction
weighted toward the shape's pixels, which are a small part of each frame), then the text encoder and transformer
together with the flow-matching loss that `LTXPipeline` samples with (`--reuse R`: on pools of encoded clips, each
used R times, to spend less of each step rendering and encoding). A checkpoint is written every `--save-every` steps
and a run started again with the same `--work` folder resumes from it, bit for bit; `--steps` may be raised to train
on, and other options changed for the steps still to come. The pipeline is saved in fp16 to `--out` with each
transformer checkpoint and at the end (swapped in whole, so the folder is always one consistent save), with
`training.json` recording each command that trained it and from which step, the steps, device, time and the last
evaluation.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import judge, model, scenes

FRAME_RATE = 25  # LTXPipeline's default; it sets the transformer's rope scale
MAX_TOKENS = 128  # LTXPipeline's default max_sequence_length: the prompt is padded to it
DROP_PROMPT = 0.1  # share of training prompts replaced by "" so that CFG has an unconditional prediction
EVAL_PROMPTS = 24
STAGES = ("patch", "vae", "transformer")


@dataclass(frozen=True)
class World:
    """What the trainer needs of a grammar: its scenes and their clips, the model's components, and the judge."""

    program: str  # the command that trains it, as recorded in training.json
    description: str  # what the command does, for its --help
    random_scene: Callable  # (rng) -> a scene with a `prompt`
    render: Callable  # (scene, frames, height, width) -> uint8 frames
    backdrop: Callable  # (scene, height, width) -> the clip's background, [height, width, 3] or broadcastable
    model: ModuleType  # SIZES, components(sizes), describe(sizes)
    judge: Callable  # (frames, prompt) -> {f"{attribute}_ok": bool, ...}
    attributes: tuple[str, ...]
    defaults: dict = field(default_factory=dict)  # argument defaults of this world


SHAPES = World("python -m stg.shapes.train", __doc__.split("\n\n")[0], scenes.random_scene, scenes.render,
               lambda scene, height, width: np.array(scenes.COLOURS[scene.background]), model, judge.judge,
               judge.ATTRIBUTES)


def parse_args(argv=None, world: World = SHAPES) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=world.program, description=world.description)
    p.add_argument("--out", required=True, help="folder for the finished diffusers pipeline")
    p.add_argument("--work", help="checkpoint and logs (default: OUT.work)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", choices=sorted(world.model.SIZES), default="full")
    p.add_argument("--patch-steps", type=int, default=8000, help="VAE steps per patch alone, on single frames (0: "
                   "none; the VAE must not downsample inside for this stage)")
    p.add_argument("--vae-steps", type=int, default=1000, help="VAE steps with neighbouring patches and frames")
    p.add_argument("--steps", type=int, default=6000, help="transformer steps")
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--vae-lr", type=float, default=1e-3, help="learning rate of the patch stage")
    p.add_argument("--context-lr", type=float, default=1e-4,
                   help="learning rate of the VAE's context stage: small, as it starts from a trained autoencoder")
    p.add_argument("--vae-decay-from", type=int, default=0, help="VAE context stage: the step from which its learning "
                   "rate falls linearly to zero at --vae-steps, which settles the weights where a constant rate keeps "
                   "trading one attribute for another (0: constant)")
    p.add_argument("--warmup", type=int, default=200, help="transformer steps of linear learning-rate warm-up")
    p.add_argument("--vae-warmup", type=int, default=100)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--size", type=int, default=32, help="frame height and width in pixels")
    p.add_argument("--vae-frames", type=int, default=3, help="frames per VAE training clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=500, help="transformer steps between judged samples (0: never)")
    p.add_argument("--shift", type=float, default=3.0, help="the saved scheduler's shift: more of the sampler's steps "
                   "at high noise, where the layout and the motion form (training sees every noise level alike)")
    p.add_argument("--train-shift", type=float, default=1.0, help="shift of the training noise levels, as the "
                   "sampler's --shift shifts its steps: above 1, more training where the shape's place and path are "
                   "decided")
    p.add_argument("--latent-noise", type=float, default=0.1, help="VAE stages: std of the noise added to the "
                   "latents the decoder learns from, relative to theirs (default: 0.1)")
    p.add_argument("--edge-weight", type=float, default=0.0, help="VAE stages: weight of the loss on differences of "
                   "neighbouring pixels, against the pixel loss's blur (default: 0, the pixel loss alone)")
    p.add_argument("--reuse", type=int, default=1, metavar="R", help="transformer stage: train on each encoded clip "
                   "R times (with fresh noise each time) instead of rendering and encoding every batch anew; "
                   "rendering and encoding are a third of a lab step's time on a CPU, so R 4 trains about 1.4 times "
                   "as fast on fewer distinct clips (default: 1)")
    p.add_argument("--pool-steps", type=int, default=500, help="with --reuse above 1: transformer steps served by one "
                   "pool of encoded clips, so that a pool holds pool-steps x batch / reuse clips")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward passes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.set_defaults(**world.defaults, world=world)
    args = p.parse_args(argv)
    if args.reuse < 1 or args.pool_steps < 1:
        p.error(f"--reuse and --pool-steps must be at least 1; got {args.reuse} and {args.pool_steps}")
    return args


# -- data -------------------------------------------------------------------------------------------
def clips(world: World, rng: np.random.Generator, count: int, frames: int,
          size: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Rendered clips in [-1, 1] as [count, 3, frames, size, size], their prompts, and a per-pixel loss weight that
    lifts the shape's pixels (and its edges) above the background's."""
    scenes_ = [world.random_scene(rng) for _ in range(count)]
    video = np.stack([world.render(s, frames, size, size) for s in scenes_])
    background = np.stack([np.broadcast_to(world.backdrop(s, size, size), (size, size, 3)) for s in scenes_])
    shape = np.any(video != np.round(background).astype(np.uint8)[:, None], axis=-1)
    x = torch.from_numpy(video).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    weight = 1 + 8 * torch.from_numpy(shape).float()[:, None]
    return x, [s.prompt for s in scenes_], weight


def rng_for(seed: int, stage: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """Every step's randomness from (seed, stage, step) alone, so that a resumed run repeats a fresh one exactly."""
    key = np.random.SeedSequence([seed, stage, step])
    return np.random.default_rng(key), torch.Generator().manual_seed(int(key.generate_state(1)[0]))


# -- stages -----------------------------------------------------------------------------------------
def vae_step(state, args, step, frames: int, stage: int, lr: float) -> float:
    vae = state["vae"]
    rng, gen = rng_for(args.seed, stage, step)
    x, _, weight = clips(args.world, rng, args.vae_batch, frames, args.size)
    x, weight = x.to(args.device), weight.to(args.device)
    with autocast(args):
        z = vae.encode(x).latent_dist.mode()
        # A little noise on the latents keeps the decoder tolerant of a sampler's imperfect ones.
        z = z + args.latent_noise * z.detach().float().std() * torch.randn(z.shape, generator=gen).to(z)
        recon = vae.decode(z).sample.float()
    error = recon - x
    loss = (weight * error.abs()).mean() + (weight * error.square()).mean()
    if args.edge_weight:
        loss = loss + args.edge_weight * edge_error(recon, x, weight)
    return optimise(state, loss, warmup=args.vae_warmup, lr=lr)


def edge_error(recon: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted L1 between the clips' differences of neighbouring pixels, across and down: a blurred edge costs as
    much as a misplaced one, where the pixel loss alone is content with a blur."""
    total = 0.0
    for axis in (-1, -2):
        step = torch.diff(recon, dim=axis) - torch.diff(x, dim=axis)
        total = total + (weight.narrow(axis, 1, weight.shape[axis] - 1) * step.abs()).mean()
    return total


def patch_step(state, args, step) -> float:
    """The VAE with each convolution cut to its own frame and pixel: a per-patch autoencoder, 27 times cheaper."""
    with centre_taps_only(state["vae"]):
        return vae_step(state, args, step, frames=1, stage=4, lr=args.vae_lr)


def context_step(state, args, step) -> float:
    """The whole VAE, neighbouring patches and frames included."""
    lr = args.context_lr * decayed(step, args.vae_decay_from, args.vae_steps)
    return vae_step(state, args, step, frames=args.vae_frames, stage=0, lr=lr)


def decayed(step: int, start: int, end: int) -> float:
    """The share of the learning rate left at `step`: all of it before `start` (or when `start` is 0), then falling
    linearly to zero at `end`."""
    if not start or step < start:
        return 1.0
    return max(0.0, (end - step) / max(end - start, 1))


def _convolutions(vae):
    from diffusers.models.autoencoders.autoencoder_kl_ltx import LTXVideoCausalConv3d

    return [m for m in vae.modules() if isinstance(m, LTXVideoCausalConv3d)]


def _centre(conv) -> tuple[int, int, int]:
    """The tap that sees the output's own frame and pixel (causal convolutions look back only)."""
    t, h, w = conv.kernel_size
    return (t - 1 if conv.is_causal else t // 2, h // 2, w // 2)


def zero_context_taps(vae) -> None:
    """Start every VAE convolution as a per-pixel one: its other taps at zero, so the patch stage's solution is
    exactly where the context stage begins."""
    with torch.no_grad():
        for conv in _convolutions(vae):
            t, h, w = _centre(conv)
            centre = conv.conv.weight[:, :, t, h, w].clone()
            conv.conv.weight.zero_()
            conv.conv.weight[:, :, t, h, w] = centre


@contextmanager
def centre_taps_only(vae):
    convs = _convolutions(vae)

    def forward(conv, hidden_states):
        t, h, w = _centre(conv)
        return F.conv3d(hidden_states, conv.conv.weight[:, :, t:t + 1, h:h + 1, w:w + 1], conv.conv.bias)

    for conv in convs:
        conv.forward = partial(forward, conv)
    try:
        yield
    finally:
        for conv in convs:
            del conv.forward


def latent_stats(vae, args) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the latents over 256 clips: `LTXPipeline` normalises with them."""
    rng, _ = rng_for(args.seed, 1, 0)
    latents = []
    with torch.no_grad():
        for _ in range(8):
            x, _, _ = clips(args.world, rng, 32, args.frames, args.size)
            latents.append(vae.encode(x.to(args.device)).latent_dist.mode().float())
    z = torch.cat(latents).transpose(0, 1).flatten(1)
    return z.mean(dim=1), z.std(dim=1)


def encode_text(pipe, prompts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """As `LTXPipeline` does: padded to MAX_TOKENS, T5 run without a mask, the mask handed to the transformer."""
    tokens = pipe.tokenizer(prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                            add_special_tokens=True, return_tensors="pt")
    embeds = pipe.text_encoder(tokens.input_ids.to(device))[0]
    return embeds, tokens.attention_mask.to(device)


def encoded(pipe, x: torch.Tensor) -> torch.Tensor:
    """Clips as the transformer learns them: the VAE's latents (its mode), normalised as `LTXPipeline` does."""
    with torch.no_grad():
        latents = pipe.vae.encode(x).latent_dist.mode()
        return pipe._normalize_latents(latents, pipe.vae.latents_mean, pipe.vae.latents_std)


def training_batch(state, args, step: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[str]]:
    """One step's latents and prompts: rendered and encoded now, or (with --reuse) drawn from the pool of its round."""
    if args.reuse == 1:
        x, prompts, _ = clips(args.world, rng, args.batch, args.frames, args.size)
        return encoded(state["pipe"], x.to(args.device)), prompts
    latents, prompts, order = pool(state, args, step // args.pool_steps)
    index = order[(step % args.pool_steps) * args.batch:][:args.batch]
    return latents[torch.from_numpy(index)].to(args.device), [prompts[i] for i in index]


def pool(state, args, round_: int) -> tuple[torch.Tensor, list[str], np.ndarray]:
    """The encoded clips of one round of `--pool-steps` steps, from (seed, round) alone, and the order in which the
    round's steps take them: each clip `--reuse` times. Kept in memory for the round, rebuilt on resuming."""
    if state.get("pool", (None,))[0] != round_:
        rng, _ = rng_for(args.seed, 5, round_)
        uses = args.pool_steps * args.batch
        count = -(-uses // args.reuse)
        latents, prompts = [], []
        for start in range(0, count, args.batch):
            x, names, _ = clips(args.world, rng, min(args.batch, count - start), args.frames, args.size)
            latents.append(encoded(state["pipe"], x.to(args.device)).cpu())
            prompts += names
        order = rng.permutation(np.tile(np.arange(count), args.reuse))[:uses]
        state["pool"] = (round_, torch.cat(latents), prompts, order)
    return state["pool"][1:]


def transformer_step(state, args, step) -> float:
    pipe = state["pipe"]
    rng, gen = rng_for(args.seed, 2, step)
    latents, prompts = training_batch(state, args, step, rng)
    prompts = ["" if drop else p for p, drop in zip(prompts, rng.uniform(size=len(prompts)) < DROP_PROMPT)]
    b, c, f, h, w = latents.shape
    x0 = pipe._pack_latents(latents, 1, 1)
    noise = torch.randn(x0.shape, generator=gen).to(x0)
    # Noise levels: half uniform (every level the sampler visits), half logit-normal (the middle, where layout forms).
    uniform = torch.rand(b, generator=gen)
    logit_normal = torch.sigmoid(torch.randn(b, generator=gen))
    sigma = shifted(torch.where(torch.arange(b) % 2 == 0, uniform, logit_normal), args.train_shift).to(x0)
    noisy = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
    with autocast(args):
        embeds, mask = encode_text(pipe, prompts, args.device)
        velocity = pipe.transformer(hidden_states=noisy, encoder_hidden_states=embeds, timestep=sigma * 1000,
                                    encoder_attention_mask=mask, num_frames=f, height=h, width=w,
                                    rope_interpolation_scale=(pipe.vae_temporal_compression_ratio / FRAME_RATE,
                                                              pipe.vae_spatial_compression_ratio,
                                                              pipe.vae_spatial_compression_ratio),
                                    return_dict=False)[0]
    loss = F.mse_loss(velocity.float(), noise - x0)
    value = optimise(state, loss, warmup=args.warmup, lr=args.lr)
    update_ema(state, step)
    return value


def shifted(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """The flow-matching schedulers' shift: the same spread of levels, moved toward pure noise."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def autocast(args):
    return torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.bf16)


def optimise(state, loss, warmup: int, lr: float) -> float:
    opt = state["opt"]
    for group in opt.param_groups:
        group["lr"] = lr * min(1.0, (state["step"] + 1) / max(warmup, 1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    opt.step()
    return float(loss.detach())


def trained_modules(pipe) -> dict:
    return {"transformer": pipe.transformer, "text_encoder": pipe.text_encoder}


def update_ema(state, step: int) -> None:
    decay = min(0.999, (1 + step) / (10 + step))
    with torch.no_grad():
        for name, module in trained_modules(state["pipe"]).items():
            for ema, live in zip(state["ema"][name].parameters(), module.parameters()):
                ema.lerp_(live, 1 - decay)


# -- evaluation -------------------------------------------------------------------------------------
def evaluate(pipe, args, count: int = EVAL_PROMPTS, guidance_scale: float = 4.0, steps: int = 16) -> dict:
    """Share of judged attributes right over `count` fixed prompts and seeds (plain CFG, stock pipeline)."""
    rng = np.random.default_rng([args.seed, 3])
    prompts = [args.world.random_scene(rng).prompt for _ in range(count)]
    right = dict.fromkeys([*args.world.attributes, "all"], 0)
    for index, prompt in enumerate(prompts):
        frames = pipe(prompt, negative_prompt="", num_frames=args.frames, height=args.size, width=args.size,
                      num_inference_steps=steps, guidance_scale=guidance_scale, output_type="np",
                      generator=torch.Generator().manual_seed(index)).frames[0]
        verdict = args.world.judge((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), prompt)
        for name in args.world.attributes:
            right[name] += verdict[f"{name}_ok"]
        right["all"] += verdict["all_ok"]
    return {k: round(v / count, 3) for k, v in right.items()}


def ema_pipeline(state, args):
    pipe = copy.copy(state["pipe"])
    pipe.register_modules(**state["ema"], scheduler=args.world.model.scheduler(args.shift))
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- the run ----------------------------------------------------------------------------------------
def new_state(args) -> dict:
    from diffusers import LTXPipeline

    torch.manual_seed(args.seed)
    pipe = LTXPipeline(**args.world.model.components(args.world.model.SIZES[args.sizes])).to(args.device)
    if args.patch_steps:
        zero_context_taps(pipe.vae)
    state = {"pipe": pipe, "vae": pipe.vae, "seconds": 0.0, "commands": []}
    start_vae_stage(state, args, STAGES[0])
    return state


def start_vae_stage(state, args, stage: str) -> None:
    """A fresh optimiser per VAE stage: the context taps had no gradient before, and Adam's moments for them would
    be zero beside a step count that skips its warm-up."""
    state.update(stage=stage, step=0, opt=torch.optim.AdamW(state["vae"].parameters(), lr=args.vae_lr,
                                                            weight_decay=0.0))


def start_transformer_stage(state, args) -> None:
    pipe = state["pipe"]
    pipe.vae.requires_grad_(False).eval()
    mean, std = latent_stats(pipe.vae, args)
    pipe.vae.latents_mean.copy_(mean)
    pipe.vae.latents_std.copy_(std)
    params = [p for m in trained_modules(pipe).values() for p in m.parameters()]
    state.update(stage="transformer", step=0, ema={k: copy.deepcopy(m).requires_grad_(False)
                                                   for k, m in trained_modules(pipe).items()},
                 opt=torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01))


STARTS = {"vae": partial(start_vae_stage, stage="vae"), "transformer": start_transformer_stage}


def save_checkpoint(state, path: Path) -> None:
    blob = {"stage": state["stage"], "step": state["step"], "seconds": state["seconds"], "commands": state["commands"],
            "modules": {k: m.state_dict() for k, m in state["pipe"].components.items() if hasattr(m, "state_dict")},
            "opt": state["opt"].state_dict(),
            "ema": {k: m.state_dict() for k, m in state.get("ema", {}).items()}}
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_checkpoint(state, args, path: Path) -> None:
    blob = torch.load(path, map_location=args.device, weights_only=True)
    pipe = state["pipe"]
    for name, weights in blob["modules"].items():
        getattr(pipe, name).load_state_dict(weights)
    if blob["stage"] == "transformer":
        state["step"] = 0
        start_transformer_stage(state, args)
        for name, weights in blob["ema"].items():
            state["ema"][name].load_state_dict(weights)
        pipe.vae.latents_mean.copy_(blob["modules"]["vae"]["latents_mean"])
        pipe.vae.latents_std.copy_(blob["modules"]["vae"]["latents_std"])
    state["opt"].load_state_dict(blob["opt"])
    state.update(stage=blob["stage"], step=blob["step"], seconds=blob["seconds"], commands=blob.get("commands", []))


def save_pipeline(state, args, evaluation: dict | None) -> Path:
    import diffusers

    out = Path(args.out)
    fresh, old = out.with_name(out.name + ".partial"), out.with_name(out.name + ".old")
    shutil.rmtree(fresh, ignore_errors=True)
    pipe = ema_pipeline(state, args)
    pipe.register_modules(**{name: copy.deepcopy(getattr(pipe, name)).half()
                             for name in ("transformer", "text_encoder", "vae")})
    pipe.save_pretrained(fresh, safe_serialization=True)  # fp16 weights: half the size, loaded in any dtype
    record = {
        "commands": state["commands"],
        "sizes": args.world.model.describe(args.world.model.SIZES[args.sizes]),
        "frames": args.frames, "height": args.size, "width": args.size, "frame_rate": FRAME_RATE,
        "vae_steps": args.vae_steps, "transformer_steps": state["step"], "batch": args.batch,
        "device": str(args.device), "threads": torch.get_num_threads(), "train_seconds": round(state["seconds"]),
        "evaluation": evaluation,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
    }
    (fresh / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():
        os.replace(out, old)
    os.replace(fresh, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def trim_log(log: Path, stage: str, step: int) -> None:
    """Keep the log to the steps a run resumed at (stage, step) has behind it, each once: a run stopped past its
    checkpoint takes those steps again, and only their new entries stay (the last of each step)."""
    if not log.exists():
        return
    resumed_at, kept = (STAGES.index(stage), step), {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        position = (STAGES.index(entry["stage"]), entry["step"])
        if position <= resumed_at:
            kept[position] = line
    trimmed = log.with_suffix(".tmp")
    trimmed.write_text("".join(f"{kept[position]}\n" for position in sorted(kept)))
    os.replace(trimmed, log)


def main(argv=None, world: World = SHAPES) -> int:
    from tqdm.auto import tqdm

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, world)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work or f"{args.out}.work")
    work.mkdir(parents=True, exist_ok=True)
    checkpoint, log = work / "checkpoint.pt", work / "log.jsonl"
    state = new_state(args)
    if checkpoint.exists():
        load_checkpoint(state, args, checkpoint)
        trim_log(log, state["stage"], state["step"])
    command = f"{world.program} " + " ".join(argv)
    if not state["commands"] or state["commands"][-1]["command"] != command:
        state["commands"].append({"command": command, "from": f"{state['stage']} step {state['step']}"})
    evaluation = None
    with open(log, "a") as log_file:
        plan = {"patch": (args.patch_steps, patch_step), "vae": (args.vae_steps, context_step),
                "transformer": (args.steps, transformer_step)}
        for stage in STAGES[STAGES.index(state["stage"]):]:
            if state["stage"] != stage:
                STARTS[stage](state, args)
            total, step_fn = plan[stage]
            bar = tqdm(total=total, initial=min(state["step"], total), desc=stage, dynamic_ncols=True)
            while state["step"] < total:
                started = time.perf_counter()
                loss = step_fn(state, args, state["step"])
                state["step"] += 1
                state["seconds"] += time.perf_counter() - started
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                entry = {"stage": stage, "step": state["step"], "loss": round(loss, 6),
                         "lr": float(f"{state['opt'].param_groups[0]['lr']:.6g}"),
                         "seconds": round(state["seconds"], 1)}
                if stage == "transformer" and args.eval_every and state["step"] % args.eval_every == 0:
                    evaluation = entry["eval"] = evaluate(ema_pipeline(state, args), args)
                    bar.write(f"step {state['step']}: {evaluation}")
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
                if state["step"] % args.save_every == 0 or state["step"] == total:
                    save_checkpoint(state, checkpoint)
                    if stage == "transformer" and state["step"] < total:
                        save_pipeline(state, args, evaluation)
            bar.close()
            if stage != STAGES[-1]:
                state["step"] = 0
    if evaluation is None and args.eval_every:
        evaluation = evaluate(ema_pipeline(state, args), args)
    out = save_pipeline(state, args, evaluation)
    print(f"saved {out} after {state['step']} transformer steps, {state['seconds']:.0f} s: {evaluation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
