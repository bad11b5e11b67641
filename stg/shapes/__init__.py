"""The offline `shapes` model: a small LTX-architecture text-to-video model trained on synthetic clips.

Every prompt of its grammar names a clip that `scenes` can render, so `judge` can score a generated video against
ground truth. `model` holds the component configs, `train` the reproducible training run.
"""
