"""The plain reference of STG on a model with factorized attention (SVD, Open-Sora), and the cases its tests run."""

from __future__ import annotations

import pytest
import torch


def guided(eps_u, eps_c, w, perturbed: list[tuple[float, torch.Tensor]], rescale: float) -> torch.Tensor:
    """eps_u + w (eps_c - eps_u) + sum of s (eps_c - eps_p) over the perturbed passes (scale s, prediction eps_p),
    rescaled toward std(eps_c)."""
    eps = eps_u + w * (eps_c - eps_u)
    for scale, eps_p in perturbed:
        eps = eps + scale * (eps_c - eps_p)
    if rescale:
        eps = eps * (rescale * eps_c.std() / eps.std() + (1 - rescale))
    return eps


def every_pass_mode_and_rescale(passes: dict):
    """Run a test for each of the passes (spatial, temporal, both), each STG mode, and rescale off and at 0.7."""
    def decorate(test):
        for name, values in (("rescale", [0.0, 0.7]), ("mode", ["stg-a", "stg-r"]), ("passes", passes)):
            test = pytest.mark.parametrize(name, values)(test)
        return test
    return decorate
