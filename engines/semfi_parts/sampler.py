"""One SemFi model run: conditioning, flow-matching sampling with CFG, decoding.

diffsynth supplies the models, the flow-matching scheduler, seeded noise and moving models
on and off the GPU (``WanVideoPipeline`` is used as that container only). What SemFi
changes in Wan-I2V (both ends in the guidance video and mask, CLIP features of both frames
summed) is done here, with the rules from ``rules``; diffsynth's own image units would
concatenate the two CLIP features instead. Each DiT pass goes through the denoiser the
engine's backend setting made (``backends.denoisers``; eager is diffsynth's ``model_fn_wan_video``);
the timesteps come from ``schedule``, and the step cache's plan (``stepcache``) may have a pass
skipped, that branch's last output reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engines.semfi_parts.loading import quiet
from engines.semfi_parts.rules import frame_mask, guidance_video, latent_frame_count, to_uint8_frames, zero_past_length
from engines.semfi_parts.schedule import sigma_schedule
from engines.semfi_parts.stepcache import BRANCHES, CachePlan

# VAE decode tiles (latent units) as the official script uses them; encode is untiled.
TILE_SIZE = (30, 52)
TILE_STRIDE = (15, 26)


@dataclass
class Request:
    """What one model run needs. ``first``/``last`` are (3, H, W) float32 in [-1, 1] at the working size."""

    first: object
    last: object
    frames: int
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    cfg: float
    shift: float
    timesteps: tuple[float, ...] = ()  # explicit schedule; overrides steps and shift when given
    cache: CachePlan | None = None  # which DiT passes run (None: all of them)


class Sampler:
    """Runs SemFi on loaded Wan models (see ``loading.load_models``)."""

    def __init__(self, models, device: str, dtype, denoiser) -> None:
        """``denoiser(latents, timestep, context, clip_feature, y) -> velocity`` runs one DiT pass (``backends``)."""
        from diffsynth.pipelines.wan_video import WanVideoPipeline

        self.pipe = WanVideoPipeline(device=device, torch_dtype=dtype)
        self.pipe.dit, self.pipe.text_encoder = models.dit, models.text_encoder
        self.pipe.image_encoder, self.pipe.vae, self.pipe.tokenizer = models.image_encoder, models.vae, models.tokenizer
        self.pipe.vram_management_enabled = self.pipe.check_vram_management_state()
        self.device, self.dtype = device, dtype
        self.denoiser = denoiser

    def encode_text(self, prompt: str):
        """umT5 embeddings (1, text_len, C), zero past the prompt's token count."""
        ids, mask = self.pipe.tokenizer(prompt, return_mask=True, add_special_tokens=True)
        embeddings = self.pipe.text_encoder(ids.to(self.device), mask.to(self.device))
        return zero_past_length(embeddings, mask.gt(0).sum(dim=1)).to(self.dtype)

    def encode_clip(self, first, last):
        """CLIP ViT features (1, 257, 1280) of both frames, each encoded on its own, summed."""
        encode = self.pipe.image_encoder.encode_image
        features = [encode([image[None].to(device=self.device, dtype=self.dtype)]) for image in (first, last)]
        return (features[0] + features[1]).to(self.dtype)

    def encode_guidance(self, first, last, frames: int):
        """y (1, 20, latent frames, H/8, W/8): the 4-channel mask, then the VAE latents of the guidance video."""
        import torch

        video = guidance_video(first, last, frames).to(dtype=self.dtype, device=self.device)
        latents = self.pipe.vae.encode([video], device=self.device)[0]
        mask = frame_mask(frames, latents.shape[2], latents.shape[3]).to(device=latents.device, dtype=latents.dtype)
        return torch.cat([mask, latents])[None].to(dtype=self.dtype, device=self.device)

    def run(self, request: Request, progress: Callable[[int, int], None] | None = None,
            observe: Callable[[int, str, object], None] | None = None):
        """The run's decoded frames (``request.frames`` HxWx3 uint8 at the working size). ``observe(step, branch,
        output)`` sees every DiT pass made (``sfi calibrate`` measures the outputs' magnitudes with it)."""
        import torch

        sigmas, timesteps = sigma_schedule(request.steps, request.shift, request.timesteps)
        total = len(timesteps) + 2
        report = progress or (lambda done, total: None)
        pipe = self.pipe
        with torch.no_grad():
            pipe.load_models_to_device(["text_encoder"])
            contexts = [self.encode_text(request.prompt)]
            if request.cfg != 1.0:  # cfg 1 is the prompt's pass alone: no negative branch
                contexts.append(self.encode_text(request.negative_prompt))
            pipe.load_models_to_device(["image_encoder"])
            clip_feature = self.encode_clip(request.first, request.last)
            pipe.load_models_to_device(["vae"])
            y = self.encode_guidance(request.first, request.last, request.frames)
            report(1, total)

            height, width = request.first.shape[1:]
            shape = (1, pipe.vae.z_dim, latent_frame_count(request.frames), height // 8, width // 8)
            latents = pipe.generate_noise(shape, seed=request.seed, rand_device="cpu")
            pipe.load_models_to_device(["dit"])
            outputs: dict[str, object] = {}  # each branch's last DiT output, reused for a skipped pass
            for index, timestep in enumerate(timesteps):
                step_time = timestep[None].to(dtype=self.dtype, device=self.device)
                for branch, context in zip(BRANCHES, contexts):
                    if request.cache is None or request.cache.runs_pass(branch, index):
                        outputs[branch] = self.denoiser(latents, step_time, context, clip_feature, y)
                        if observe is not None:
                            observe(index, branch, outputs[branch])
                velocity = outputs[BRANCHES[0]]
                if len(contexts) > 1:
                    unguided = outputs[BRANCHES[1]]
                    velocity = unguided + request.cfg * (velocity - unguided)
                sigma_next = sigmas[index + 1] if index + 1 < len(sigmas) else 0
                latents = latents + velocity * (sigma_next - sigmas[index])  # Euler, as diffsynth's scheduler steps
                report(index + 2, total)

            pipe.load_models_to_device(["vae"])
            with quiet():
                video = pipe.vae.decode(latents, device=self.device, tiled=True, tile_size=TILE_SIZE, tile_stride=TILE_STRIDE)
            pipe.load_models_to_device([])
            report(total, total)
        return to_uint8_frames(video[0])
