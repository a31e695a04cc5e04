"""RIFE's IFNet (the 4.25 layout of Huang et al., "Real-Time Intermediate Flow Estimation", ECCV 2022),
written for sfi from the published description, and the checked loading of its weights.

The network estimates, for a time t between two frames, the flow from the wanted frame back to each
of them plus a blend mask, coarse to fine: five blocks work at 1/16, 1/8, 1/4, 1/2 and 1/1 of the
frame size (divided by the ``scale`` setting: 0.5 runs every block at half that size, for 4K), each
refining the flow of the one before from both frames warped by it. A small encoder gives each frame
four feature channels at full size, which are warped along with the pictures. The frame at t is the
two ends warped by the final flows and blended by the sigmoid of the mask.

Only this module imports torch; ``engines.rife`` imports it on first use.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engines.errors import EngineError

# Each block's working size is the frame size divided by its level (at scale 1) ...
LEVELS = (16, 8, 4, 2, 1)
# ... and its width in channels.
WIDTHS = (192, 128, 96, 64, 32)
FEATURES = 4  # encoder channels per frame
CONTEXT = 8  # channels a block hands on to the next besides flow and mask
RESIDUALS = 8  # residual convolutions per block
# What each block's transposed convolution makes, before the 2x pixel shuffle: flow both ways (4), mask, context.
BLOCK_OUTPUT = 4 * (4 + 1 + CONTEXT)
# A block halves its input twice; the first works at 1/16: sizes are padded to a multiple of 16 * 4.
MULTIPLE = LEVELS[0] * 4
# In the published weights but used only in training (the distillation teacher and a time regressor).
TRAINING_ONLY = ("teacher.", "caltime.")


def leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def resized(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize to an exact size (the padded sizes make every level a whole number of pixels)."""
    if x.shape[-2:] == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


@functools.lru_cache(maxsize=4)
def pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """1xHxWx2: every pixel's own place in grid_sample's units (align_corners=True: -1 and +1 are the centres
    of the edge pixels); made once per size, as it is the same for every warp."""
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    return torch.stack((xs.view(1, width).expand(height, width), ys.view(height, 1).expand(height, width)), -1)[None]


def sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """Where ``backward_warp`` samples for each pixel p: p + flow(p) (flow in pixels, x then y; one pixel is
    2 / (size - 1)). Made once per flow: a picture and its features move by the same one."""
    _, _, height, width = flow.shape
    per_pixel = flow.new_tensor((2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)))
    return pixel_grid(height, width, flow.device, flow.dtype) + flow.permute(0, 2, 3, 1) * per_pixel


def backward_warp(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``image`` sampled at ``grid`` (from ``sampling_grid``); the edges repeat outward."""
    image = image.expand(grid.shape[0], -1, -1, -1) if image.shape[0] != grid.shape[0] else image
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class Encoder(nn.Module):
    """Four feature channels per frame at full size (down to half size and back up)."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, FEATURES, 4, 2, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = leaky(self.cnn0(image))
        x = leaky(self.cnn1(x))
        return self.cnn3(leaky(self.cnn2(x)))


class Residual(nn.Module):
    """x + beta * conv(x), with a learnt per-channel ``beta``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return leaky(self.conv(x) * self.beta + x)


def strided(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, 2, 1), nn.LeakyReLU(0.2))


class FlowBlock(nn.Module):
    """One level: from its inputs at 1/divisor size, flow (or a flow update), mask and context at full size."""

    def __init__(self, inputs: int, width: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(strided(inputs, width // 2), strided(width // 2, width))
        self.convblock = nn.Sequential(*(Residual(width) for _ in range(RESIDUALS)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, BLOCK_OUTPUT, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, pieces: list[torch.Tensor], times: torch.Tensor, flow: torch.Tensor | None, divisor: float,
                extra: list[torch.Tensor] = ()):
        """The inputs in the trained order: ``pieces``, the time plane, ``extra`` (mask and context), the flow.
        Each full-size input is shrunk alone and they are joined small: the same as joining them first
        (bilinear resizing treats each channel alone) without a full-size copy of them all."""
        height, width = pieces[0].shape[-2:]
        small = (round(height / divisor), round(width / divisor))
        time = times.view(-1, 1, 1, 1).expand(-1, 1, *small)  # a constant plane: the same at any size
        parts = [resized(piece, *small) for piece in pieces] + [time] + [resized(piece, *small) for piece in extra]
        if flow is not None:
            parts.append(resized(flow, *small) / divisor)  # vectors shrink with the picture
        out = resized(self.lastconv(self.convblock(self.conv0(torch.cat(parts, 1)))), height, width)
        return out[:, :4] * divisor, out[:, 4:5], out[:, 5:]


class IFNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        ends = 2 * (3 + FEATURES) + 1  # both pictures, their features, the time
        for index, width in enumerate(WIDTHS):
            inputs = ends if index == 0 else ends + 1 + CONTEXT + 4  # + mask, context and the flow so far
            self.add_module(f"block{index}", FlowBlock(inputs, width))
        self.encode = Encoder()

    def blocks(self) -> list[FlowBlock]:
        return [getattr(self, f"block{index}") for index in range(len(WIDTHS))]

    def forward(self, first: torch.Tensor, last: torch.Tensor, times: torch.Tensor, scale: float = 1.0,
                features: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The frames at ``times`` (one per entry, B of them) between ``first`` and ``last`` (1x3xHxW each,
        H and W multiples of ``padding_multiple(scale)``), and how far apart the two ends still are once
        warped to each time (mean absolute difference per frame: small when the flow explains the change);
        ``features`` are the encoder's for the two ends when already made (they do not depend on t, so a
        gap's batches share them)."""
        batch = times.shape[0]
        first_features, last_features = features or (self.encode(first), self.encode(last))
        ends = [x.expand(batch, -1, -1, -1) for x in (first, last, first_features, last_features)]
        flow = mask = context = grids = None  # grids: where the flow so far samples each end
        warped_first, warped_last = ends[0], ends[1]
        for block, level in zip(self.blocks(), LEVELS):
            divisor = level / scale
            if flow is None:
                flow, mask, context = block(ends, times, None, divisor)
            else:
                moved_features = [backward_warp(ends[2], grids[0]), backward_warp(ends[3], grids[1])]
                update, mask, context = block([warped_first, warped_last, *moved_features], times, flow, divisor,
                                              extra=[mask, context])
                flow = flow + update
            grids = sampling_grid(flow[:, :2]), sampling_grid(flow[:, 2:])
            warped_first, warped_last = backward_warp(ends[0], grids[0]), backward_warp(ends[1], grids[1])
        weight = torch.sigmoid(mask)
        apart = (warped_first - warped_last).abs().mean(dim=(1, 2, 3))
        return warped_first * weight + warped_last * (1 - weight), apart


def padding_multiple(scale: float) -> int:
    """What the frame's sides are padded to: every block's working size a whole number of pixels."""
    return round(MULTIPLE / min(scale, 1.0))


def _examples(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def load_weights(path: Path) -> IFNet:
    """The network with the weights in ``path`` (a state dict of tensors, read with ``weights_only``), after
    checking that every tensor the network needs is there with its shape and that nothing else is (but the
    training-only ones); a file that is not these weights is refused with a one-line summary."""
    fix = "reinstall them with 'bash scripts/install.sh rife' or point engines.rife.weights at RIFE 4.25's flownet.pkl"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated zip, a pickle of other objects, not a torch file at all
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise EngineError(f"cannot read RIFE weights '{path}' ({reason}); {fix}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EngineError(f"RIFE weights '{path}' are not a dictionary of tensors; {fix}")
    state = {key.removeprefix("module."): value for key, value in state.items()}  # saved from DataParallel
    used = {key: value for key, value in state.items() if not key.startswith(TRAINING_ONLY)}
    network = IFNet()
    expected = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    missing = sorted(set(expected) - set(used))
    unexpected = sorted(set(used) - set(expected))
    wrong = sorted(f"{key} {tuple(used[key].shape)} (expected {expected[key]})"
                   for key in set(expected) & set(used) if tuple(used[key].shape) != expected[key])
    problems = [f"{len(names)} {what}: {_examples(names)}" for names, what in
                ((missing, f"of {len(expected)} tensors missing"), (wrong, "with another shape"),
                 (unexpected, "unknown tensors")) if names]
    if problems:
        raise EngineError(f"'{path}' is not RIFE 4.25 IFNet weights: {'; '.join(problems)}; {fix}")
    network.load_state_dict(used, strict=True)
    return network.eval()
