"""Train the lab model from scratch: `python -m stg.lab.train --out DIR [--device cuda]`.

The shapes model's trainer (`stg.shapes.train`: its stages, checkpoints, resumption and record) on the lab world. The
VAE halves space and time inside, so the per-patch stage is skipped (`--patch-steps 0`) and the VAE trains whole on
5-frame clips (2 latent frames) from the start.
"""

from __future__ import annotations

import sys

from ..shapes.train import World, main as train
from . import judge, model, world

LAB = World("python -m stg.lab.train", __doc__.split("\n\n")[0], world.random_scene, world.render, world.background, model, judge.judge,
            judge.ATTRIBUTES, defaults={"frames": 17, "size": 64, "vae_frames": 5, "patch_steps": 0})


def main(argv=None) -> int:
    return train(argv, LAB)


if __name__ == "__main__":
    sys.exit(main())
