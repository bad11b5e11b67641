"""The command line's help: what each command does, the files it writes, examples, exit status."""

INTRO = """\
STG (Spatiotemporal Skip Guidance, Hyung et al., arXiv 2411.18664) runs the
model once more per step with some transformer blocks skipped (stg-r: a block
returns its input; stg-a: its video self-attention becomes an identity map)
and steers away from that weaker prediction:
    eps = eps_u + w (eps_c - eps_u) + s (eps_c - eps_p)"""

DESCRIPTION = """\
Classifier-free guidance (CFG) beside CFG + Spatiotemporal Skip Guidance (STG)
on one video diffusion model, from the same seed, with figures that tell how
much each video moves, flickers and how sharp it is.

""" + INTRO

TOP_EPILOG = """\
examples:
  python -m stg compare --model shapes --prompt "a red circle moving right on a blue background" --out out/circle
  python -m stg sweep --model ltx-video --prompt "waves at dusk" --out out/blocks

Run `python -m stg COMMAND --help` for the settings, the files written and the
exit status (0 done, 1 the run failed, 2 bad input, 130 interrupted)."""

COMMANDS = {
    "compare": ("CFG beside CFG + STG, measured", """\
Render one prompt twice from the same seed and the same initial noise: once
with classifier-free guidance (CFG), once with CFG + STG. Write both videos,
the two side by side, and their settings and figures (motion, flicker,
sharpness). The model is loaded once, however many prompts there are."""),
    "sweep": ("one CFG + STG video per candidate block, in one grid", """\
Render the CFG video and one CFG + STG video per candidate block, all from the
same seed and initial noise, as one labelled grid video, with the figures
(motion, flicker, sharpness) of every video in a CSV file: the quick way to
find the block to perturb on a model. Sizes left out are the preset's reduced
ones (half its steps, frames and resolution), as in the app's block explorer.
The model is loaded once, however many prompts there are."""),
}

COMMON_EPILOG = """\
defaults:
  Every setting left out takes its value from the model's preset:
{presets}
  `--model KEY --help` shows one preset's values beside each setting.

figures (per video, also in settings.json):
{figures}

with --prompts-file FILE:
  One prompt a line; blank lines and lines starting with # are skipped. Each
  prompt gets its own folder DIR/NNN-words-of-the-prompt/; DIR/summary.csv
  gets the figures of every prompt and their means, and the same table is
  printed on stdout. Every prompt is checked before the first one runs.

exit status:
  0    done
  1    the run failed (out of memory, a video could not be written, ...)
  2    bad command line, setting, file or model: one line on stderr,
       "stg: error: ..."
  130  interrupted (Ctrl-C); folders already finished are kept

environment:
  STG_CACHE        where the offline tiny models are built
                   (default ~/.cache/stg-studio)
  HF_HOME          where hub models are cached
  HF_HUB_OFFLINE   1: never ask the hub, use the cache only"""

EPILOGS = {
    "compare": """\
files written (in --out DIR, or in each prompt's folder):
  cfg.mp4            the CFG video (H.264, yuv420p)
  stg.mp4            the CFG + STG video
  side_by_side.mp4   both, captioned with their settings
  settings.json      everything that reproduces the run, and the figures of
                     both videos

examples:
  python -m stg compare --model shapes \\
      --prompt "a red circle moving right on a blue background" --out out/circle
  python -m stg compare --model ltx-video --prompt "waves at dusk" \\
      --stg-blocks "14, 19" --stg-scale 1.5 --seed 7 --out out/waves
  python -m stg compare --model wan-1.3b --prompts-file prompts.txt \\
      --steps 30 --out out/batch

{common}""",
    "sweep": """\
files written (in --out DIR, or in each prompt's folder):
  grid.mp4        the CFG video first, then one labelled cell per candidate
  figures.csv     one row per video: block (empty for CFG), label, then its
                  figures
  settings.json   everything that reproduces the run, and the figures of
                  every video

examples:
  python -m stg sweep --model shapes \\
      --prompt "a white square moving up on a black background" --out out/blocks
  python -m stg sweep --model ltx-video --prompt "waves at dusk" \\
      --candidate-blocks "11, 15, 19, 23" --height 256 --width 384 --out out/b

{common}""",
}
