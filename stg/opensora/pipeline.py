"""Open-Sora 1.2 text-to-video as a diffusers pipeline (T5 text encoder, STDiT3, rectified flow, video VAE).

The call follows hpcaitech/Open-Sora v1.2.0's ``scripts/inference.py`` with ``RFLOW.sample``: the prompt gets
"aesthetic score: 6.5." appended, is padded to 300 T5 tokens and encoded with its mask; the unconditional rows
are the transformer's learned ``y_embedding`` with the prompt's own mask (the original has no negative prompt;
one given here replaces the null text); one forward per step over [cond; uncond], of whose output channels the
first half is the velocity; v = u + s (c - u). Not ported: the original's caption cleaning (``clean_caption``,
applied twice) and its image- and video-conditioned modes (``x_mask``).
"""

from __future__ import annotations

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import T5EncoderModel, T5TokenizerFast

from .scheduler import OpenSoraRFlowScheduler
from .transformer import OpenSoraTransformer3DModel
from .vae import OpenSoraVAE


class OpenSoraPipelineOutput(BaseOutput):
    frames: object


class OpenSoraPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents"]

    def __init__(self, tokenizer: T5TokenizerFast, text_encoder: T5EncoderModel,
                 transformer: OpenSoraTransformer3DModel, vae: OpenSoraVAE, scheduler: OpenSoraRFlowScheduler):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae,
                              scheduler=scheduler)
        self.vae_scale_factor_spatial = 2 ** (len(vae.spatial_vae.config.block_out_channels) - 1) if vae else 8
        self.vae_scale_factor_temporal = vae.temporal_vae.time_factor if vae else 4  # 17 frames make 5, not 4.25
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    def _encode_text(self, texts: list[str], max_sequence_length: int, device):
        tokens = self.tokenizer(texts, max_length=max_sequence_length, padding="max_length", truncation=True,
                                add_special_tokens=True, return_tensors="pt")
        mask = tokens.attention_mask.to(device)
        return self.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0], mask

    def encode_prompt(self, prompt: str | list[str], do_classifier_free_guidance: bool = True,
                      negative_prompt: str | list[str] | None = None, aesthetic_score: float | None = 6.5,
                      max_sequence_length: int = 300, device=None, prompt_embeds: torch.Tensor | None = None,
                      prompt_attention_mask: torch.Tensor | None = None):
        """(prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask); without
        CFG the negative ones are None. The negative is the learned null text with the prompt's mask, as in the
        original, unless a negative prompt is given (an addition here: it is then encoded as it stands)."""
        device = device or self._execution_device
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            if aesthetic_score is not None:
                score = f" aesthetic score: {aesthetic_score:.1f}."
                prompts = [p if "aesthetic score:" in p else p + score for p in prompts]
            prompt_embeds, prompt_attention_mask = self._encode_text(prompts, max_sequence_length, device)
        if prompt_attention_mask is None:
            prompt_attention_mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.long, device=device)
        if not do_classifier_free_guidance:
            return prompt_embeds, prompt_attention_mask, None, None
        if negative_prompt:
            negatives = [negative_prompt] * len(prompt_embeds) if isinstance(negative_prompt, str) else negative_prompt
            return (prompt_embeds, prompt_attention_mask,
                    *self._encode_text(list(negatives), prompt_embeds.shape[1], device))
        null = self.transformer.y_embedding[: prompt_embeds.shape[1]].to(prompt_embeds.dtype)
        return prompt_embeds, prompt_attention_mask, null.expand_as(prompt_embeds), prompt_attention_mask

    def check_inputs(self, height: int, width: int, num_frames: int):
        for name, value in (("height", height), ("width", width)):
            if value < self.vae_scale_factor_spatial:
                raise ValueError(f"{name} must be at least {self.vae_scale_factor_spatial} pixels, got {value}")
        # The timestep transform scales with num_frames // 17: from 2 to 16 frames it would make every timestep 0.
        if num_frames < 1 or 1 < num_frames < 17 and self.scheduler.config.use_timestep_transform:
            raise ValueError(f"num_frames must be 1 or at least 17, got {num_frames}")

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int = 720,
        width: int = 1280,
        num_frames: int = 51,
        fps: int = 24,
        num_inference_steps: int = 30,
        guidance_scale: float = 7.0,
        aesthetic_score: float | None = 6.5,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        max_sequence_length: int = 300,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
    ):
        """Videos of `num_frames` frames; CFG where guidance_scale > 1. `latents` (normalised, [B, 4, F', H/8, W/8])
        replace the initial noise; output_type "latent" returns the final latents undecoded."""
        self.check_inputs(height, width, num_frames)
        device = self._execution_device
        cfg = guidance_scale > 1
        cond, cond_mask, null, null_mask = self.encode_prompt(
            prompt, cfg, negative_prompt, aesthetic_score, max_sequence_length, device, prompt_embeds,
            prompt_attention_mask,
        )
        text = torch.cat([cond, null]) if cfg else cond
        text_mask = torch.cat([cond_mask, null_mask]) if cfg else cond_mask

        dtype = self.transformer.dtype
        shape = (cond.shape[0], self.transformer.config.in_channels, self.vae.latent_frames(num_frames),
                 height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype) if latents is None else latents
        latents = latents.to(device)
        self.scheduler.set_timesteps(num_inference_steps, device, height=height, width=width, num_frames=num_frames)

        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = torch.cat([latents, latents]) if cfg else latents
            output = self.transformer(
                hidden_states=model_input.to(dtype), timestep=t.expand(model_input.shape[0]),
                encoder_hidden_states=text, encoder_attention_mask=text_mask, fps=fps, height=height, width=width,
                return_dict=False,
            )[0]
            velocity = output[:, : latents.shape[1]]
            if cfg:
                v_cond, v_uncond = velocity.chunk(2)
                velocity = v_uncond + guidance_scale * (v_cond - v_uncond)
            latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                names = callback_on_step_end_tensor_inputs
                outputs = callback_on_step_end(self, i, t, {name: locals()[name] for name in names})
                latents = outputs.pop("latents", latents)

        if output_type == "latent":
            video = latents
        else:
            decoded = self.vae.decode(latents.to(self.vae.dtype), num_frames=num_frames)
            video = self.video_processor.postprocess_video(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        return OpenSoraPipelineOutput(frames=video) if return_dict else (video,)
