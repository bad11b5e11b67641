"""The offline `lab` model: a small LTX-architecture text-to-video model trained on a richer synthetic world.

`world` holds the grammar and the renderer (every prompt has a ground-truth clip), `judge` reads a video back
against its prompt and measures its quality and diversity, `model` the component configs, `train` the training run
(the shapes model's trainer on this world).
"""
