"""Open-Sora 1.2's rectified-flow sampler as a diffusers scheduler.

Timesteps t_i = (1 - i / N) * 1000, each moved toward noise by t' = r t / (1 + (r - 1) t) (t in [0, 1]) with
r = sqrt(H * W / 512^2) * sqrt(F // 17 * 5) for a video of F frames of H x W pixels (r from the space alone for
one frame); an Euler step x += v (t_i - t_{i+1}) / 1000 with t_N = 0. The model's output v points from noise to
data. As in hpcaitech/Open-Sora v1.2.0, ``opensora/schedulers/rf/``.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput


class OpenSoraRFlowScheduler(SchedulerMixin, ConfigMixin):
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        use_timestep_transform: bool = True,
        base_resolution: int = 512 * 512,
        base_num_frames: int = 1,
        transform_scale: float = 1.0,
    ):
        self.timesteps = torch.empty(0)
        self._ends = torch.empty(0)  # each step's end: the next timestep, 0 after the last
        self._step_index = 0

    def shift_ratio(self, height: int, width: int, num_frames: int) -> torch.Tensor:
        """r of the timestep transform, in float32 as the original computes it from its float tensors."""
        space = (torch.tensor(float(height * width)) / self.config.base_resolution).sqrt()
        latent_frames = 1 if num_frames == 1 else num_frames // 17 * 5
        time = (torch.tensor(float(latent_frames)) / self.config.base_num_frames).sqrt()
        return space * time * self.config.transform_scale

    def set_timesteps(self, num_inference_steps: int, device=None, height: int = 720, width: int = 1280,
                      num_frames: int = 51):
        total = self.config.num_train_timesteps
        steps = torch.tensor([(1.0 - i / num_inference_steps) * total for i in range(num_inference_steps)])
        if self.config.use_timestep_transform:
            ratio = self.shift_ratio(height, width, num_frames)
            t = steps / total
            steps = ratio * t / (1 + (ratio - 1) * t) * total
        self.timesteps = steps.to(device)
        self._ends = torch.cat([steps[1:], torch.zeros(1)]).to(device)
        self._step_index = 0

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        """One Euler step along the velocity `model_output`, from the current timestep to the next."""
        i = self._step_index
        dt = (self.timesteps[i] - self._ends[i]) / self.config.num_train_timesteps
        prev_sample = sample + model_output * dt
        self._step_index += 1
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)
