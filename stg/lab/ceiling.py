"""What the lab VAE lets through: `python -m stg.lab.ceiling [--clips N] [--diversity N] [--model DIR] [--sheet PNG]`.

Rendered clips of random scenes, judged as they are and after an encode-decode round trip through the model's VAE.
No transformer can draw what its VAE cannot decode, so the round trip's share right per attribute is the model's
ceiling: an attribute the round trip loses is the VAE's to fix, not guidance's. So is the judder it adds (the median of
the judge's `judder`, how unevenly the objects move). `--sheet` also draws the first few clips' frames beside their
round trips, to see how it loses them. `--diversity` also reads the diversity ratios of the scale sweep's
`--seeds` table from a few rendered clips of each of N prompts, as rendered and after the round trip: the ratios the
training data itself reads at that many clips, and what the VAE alone does to them.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from PIL import Image
from diffusers import AutoencoderKLLTXVideo

from . import judge, world
from .model import SHIPPED


def round_trip(vae, clip: np.ndarray) -> np.ndarray:
    """A uint8 clip [frames, height, width, 3] through the VAE's encoder (its mode) and decoder."""
    x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        decoded = vae.decode(vae.encode(x).latent_dist.mode()).sample
    return ((decoded[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def round_trips(vae, clips: int, seed: int):
    """The first `clips` random scenes of `seed`, each with its rendered clip and that clip's round trip."""
    rng = np.random.default_rng(seed)
    for _ in range(clips):
        scene = world.random_scene(rng)
        clip = world.render(scene)
        yield scene, clip, round_trip(vae, clip)


def ceiling(vae, clips: int, seed: int = 0) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Share right per attribute of `clips` random scenes, rendered and round-tripped; and the median judder (percent)
    of each, how unevenly the objects move (a VAE that draws a latent's four frames in a jump and a halt adds it)."""
    right = {"rendered": dict.fromkeys(judge.ATTRIBUTES, 0), "round trip": dict.fromkeys(judge.ATTRIBUTES, 0)}
    judders = {name: [] for name in right}
    for scene, clip, decoded in round_trips(vae, clips, seed):
        for name, frames in (("rendered", clip), ("round trip", decoded)):
            verdict = judge.judge(frames, scene)
            for attribute in judge.ATTRIBUTES:
                right[name][attribute] += verdict[f"{attribute}_ok"]
            if verdict["judder"] is not None:
                judders[name].append(verdict["judder"])
    shares = {name: {a: count / clips for a, count in counts.items()} for name, counts in right.items()}
    return shares, {name: float(np.median(values)) if values else float("nan") for name, values in judders.items()}


def diversity(vae, prompts: int, clips: int = 4, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean `judge.diversity` ratios over `prompts` random prompts, each drawn as `clips` rendered clips (a sweep's
    seeds), as rendered and after the round trip."""
    rng = np.random.default_rng(seed)
    ratios = {"rendered": [], "round trip": []}
    for _ in range(prompts):
        prompt = world.random_scene(rng)
        rendered = [world.render(world.scene_for(prompt, rng)) for _ in range(clips)]
        for name, videos in (("rendered", rendered), ("round trip", [round_trip(vae, c) for c in rendered])):
            ratios[name].append(judge.diversity(videos, prompt))
    return {name: {key: float(np.mean([r[key] for r in rows])) for key in judge.DIVERSITY}
            for name, rows in ratios.items()}


def sheet(vae, rows: int = 6, seed: int = 0, frames: tuple[int, ...] = (8, 16)) -> np.ndarray:
    """The first `rows` scenes of `seed` (the ones `ceiling` judges first), one row each: every frame in `frames`
    as rendered, then after the round trip."""
    lines = [np.concatenate([video[f] for f in frames for video in (clip, decoded)], axis=1)
             for _, clip, decoded in round_trips(vae, rows, seed)]
    return np.concatenate(lines, axis=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stg.lab.ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=48, help="random scenes to judge (default: 48)")
    parser.add_argument("--model", default=str(SHIPPED), help="the pipeline folder whose vae/ to use")
    parser.add_argument("--diversity", type=int, default=0, metavar="N", help="also the mean diversity ratios of N "
                        "random prompts, four rendered clips each, as rendered and after the round trip (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes (default: 0)")
    parser.add_argument("--sheet", help="also write a PNG of the first six clips' frames 8 and 16, each as rendered "
                        "and after the round trip, three times enlarged")
    args = parser.parse_args(argv)
    vae = AutoencoderKLLTXVideo.from_pretrained(args.model, subfolder="vae").eval()
    if args.sheet:
        image = Image.fromarray(sheet(vae, seed=args.seed))
        image.resize((image.width * 3, image.height * 3), Image.NEAREST).save(args.sheet)
    shares, judders = ceiling(vae, args.clips, args.seed)
    print(f"{'share right':<12}" + "".join(f"{a:>11}" for a in judge.ATTRIBUTES) + f"{'judder %':>11}")
    for name, right in shares.items():
        print(f"{name:<12}" + "".join(f"{right[a]:>11.2f}" for a in judge.ATTRIBUTES) + f"{judders[name]:>11.1f}")
    if args.diversity:
        print(f"\n{'diversity':<12}" + "".join(f"{key:>14}" for key in judge.DIVERSITY))
        for name, ratios in diversity(vae, args.diversity, seed=args.seed).items():
            print(f"{name:<12}" + "".join(f"{ratios[key]:>14.2f}" for key in judge.DIVERSITY))
    return 0


if __name__ == "__main__":
    sys.exit(main())
