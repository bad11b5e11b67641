"""Open-Sora 1.2 (hpcaitech/Open-Sora v1.2.0, Apache-2.0) in diffusers' form: STDiT3, its video VAE, the
rectified-flow sampler and the text-to-video pipeline, proven equal to the original code on tiny random models
(tests/test_opensora.py, data made by parity_data.py). convert.py turns the hub checkpoints into this form."""

from .pipeline import OpenSoraPipeline
from .scheduler import OpenSoraRFlowScheduler
from .transformer import OpenSoraTransformer3DModel
from .vae import OpenSoraVAE

__all__ = ["OpenSoraPipeline", "OpenSoraRFlowScheduler", "OpenSoraTransformer3DModel", "OpenSoraVAE"]
