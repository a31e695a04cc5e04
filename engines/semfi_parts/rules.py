"""Every numeric rule SemFi's results depend on, one plain function each.

Each function states the rule from ``docs/semfi-method.md`` it implements, so tests can check
it against the document rather than against this code. Sections followed: "Frame counts"
(model and latent frame counts, retiming positions), "Expert table" (expert choice), "Working size",
"Conditioning" (pixel range, guidance video, mask, text zeroing), "Sampling defaults" (uint8 frames).
"""

from __future__ import annotations

import math

import numpy as np

from engines.errors import EngineError

# Frame counts the six expert LoRAs were trained on; LoRA index 1..6 in this order.
EXPERT_FRAME_COUNTS = (5, 9, 17, 33, 65, 81)

# Target pixel areas of the working size (Wan2.1's 480p and 720p).
AREAS = {"480p": 832 * 480, "720p": 1280 * 720}
SIZE_STEP = 16  # VAE 8x times patch 2x


def model_frame_count(new_frames: int) -> int:
    """Frames the model runs for ``new_frames`` in-betweens: the smallest 4k+1 >= new_frames + 2."""
    if new_frames < 1:
        raise ValueError(f"need at least one new frame, got {new_frames}")
    needed = new_frames + 2
    return needed + (1 - needed) % 4


def latent_frame_count(frames: int) -> int:
    """Latent frames of an ``frames``-frame video: the VAE compresses time 4x after the first frame."""
    return (frames - 1) // 4 + 1


def expert_frames(frames: int) -> int:
    """The expert's trained frame count for a run of ``frames``: argmin |frames - s|, ties to the smaller s."""
    return min(EXPERT_FRAME_COUNTS, key=lambda s: (abs(frames - s), s))


def expert_index(frames: int) -> int:
    """LoRA index (1..6) of the expert for a run of ``frames`` model frames."""
    return EXPERT_FRAME_COUNTS.index(expert_frames(frames)) + 1


def area_pixels(area: str | int) -> int:
    """Pixel area of an ``area`` setting: ``480p``, ``720p`` or a pixel count."""
    if isinstance(area, int) and not isinstance(area, bool):
        pixels = area
    elif isinstance(area, str) and area.lower() in AREAS:
        return AREAS[area.lower()]
    elif isinstance(area, str) and area.isdigit():
        pixels = int(area)
    else:
        raise EngineError(f"area must be 480p, 720p or a pixel count, got '{area}'")
    if pixels < SIZE_STEP * SIZE_STEP:
        raise EngineError(f"area {pixels} is too small; use at least {SIZE_STEP * SIZE_STEP} pixels (or 480p / 720p)")
    return pixels


def working_size(width: int, height: int, area: str | int) -> tuple[int, int]:
    """Model size (width, height) for a ``width`` x ``height`` source: about ``area`` pixels,
    the source's aspect ratio, both sides multiples of 16."""
    pixels = area_pixels(area)
    scale = math.sqrt(pixels / (width * height))
    return (max(SIZE_STEP, round(width * scale / SIZE_STEP) * SIZE_STEP),
            max(SIZE_STEP, round(height * scale / SIZE_STEP) * SIZE_STEP))


def check_working_size(width: int, height: int) -> None:
    """A size given directly (``--raw --size``) must be multiples of 16."""
    if width % SIZE_STEP or height % SIZE_STEP or width <= 0 or height <= 0:
        raise EngineError(f"--size {width}x{height} does not suit the model: width and height must be positive "
                       f"multiples of {SIZE_STEP} (e.g. {max(SIZE_STEP, round(width / SIZE_STEP) * SIZE_STEP)}x"
                       f"{max(SIZE_STEP, round(height / SIZE_STEP) * SIZE_STEP)})")


def to_model_pixels(frame: np.ndarray):
    """An HxWx3 uint8 frame as a (3, H, W) float32 tensor in [-1, 1]: x * 2/255 - 1."""
    import torch

    return torch.from_numpy(frame.astype(np.float32) * (2 / 255) - 1).permute(2, 0, 1).contiguous()


def guidance_video(first, last, frames: int):
    """The VAE's guidance video (3, frames, H, W): frame 0 = first, frame frames-1 = last, zeros between."""
    import torch

    video = torch.zeros((3, frames) + tuple(first.shape[1:]), dtype=first.dtype)
    video[:, 0] = first
    video[:, -1] = last
    return video


def frame_mask(frames: int, latent_height: int, latent_width: int):
    """The 4-channel conditioning mask (4, latent frames, h, w).

    Ones at frame 0 and frame frames-1, zeros between; frame 0 repeated 4 times, then the
    frames + 3 entries folded into groups of 4 (one group per latent frame, 4 channels).
    """
    import torch

    per_frame = torch.zeros(frames)
    per_frame[0] = 1
    per_frame[-1] = 1
    padded = torch.cat([per_frame[:1].repeat(4), per_frame[1:]])
    groups = padded.view(latent_frame_count(frames), 4).transpose(0, 1)
    return groups[:, :, None, None].expand(4, -1, latent_height, latent_width).contiguous()


def zero_past_length(embeddings, lengths):
    """Text embeddings (B, L, C) with every position at or past each prompt's token count set to 0."""
    out = embeddings.clone()
    for row, length in enumerate(lengths):
        out[row, int(length):] = 0
    return out


def to_uint8_frames(video) -> list[np.ndarray]:
    """Decoded video (3, F, H, W) in [-1, 1] as F HxWx3 uint8 frames: ((x/2 + 0.5).clip(0, 1) * 255), truncated."""
    scaled = ((video.float() / 2 + 0.5).clip(0, 1) * 255).to("cpu").numpy().astype(np.uint8)
    return [np.ascontiguousarray(scaled[:, index].transpose(1, 2, 0)) for index in range(scaled.shape[1])]


def frame_positions(count: int, frames: int) -> np.ndarray:
    """Where each of ``count`` evenly timed in-betweens falls on the model's frame axis 0..frames-1.

    In-between i (1-based) sits at time i / (count + 1); model frame j at j / (frames - 1).
    """
    return np.arange(1, count + 1, dtype=np.float64) * (frames - 1) / (count + 1)
