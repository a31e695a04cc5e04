"""Reading still images into the RGB frames the engines work on.

Whatever the file holds (EXIF-rotated JPEG, 16-bit PNG, palette, CMYK, gray, alpha),
the result is an HxWx3 uint8 RGB array as the picture is meant to be seen.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sfi_cli.errors import SfiError, require_input_file

# The largest frame sfi works on: an engine holds a few float copies of it, so a frame past this
# would run a normal machine out of memory part-way instead of failing at the start.
MAX_SIDE = 16384
MAX_PIXELS = 8192 * 8192  # 67 Mpx: twice 8K UHD
SIZE_LIMIT = (f"sfi works on frames of at most {MAX_SIDE} pixels a side and {MAX_PIXELS // 1_000_000} Mpx "
              f"(8192x8192); scale it down first")


def check_frame_size(width: int, height: int, what: str) -> None:
    """Refuse a frame size that cannot be worked on in memory, naming the limit."""
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise SfiError(f"{what} {width}x{height} is too large: {SIZE_LIMIT}")


def load_image(path: Path) -> np.ndarray:
    """Read an image file as upright 8-bit RGB; transparent areas are laid over black."""
    path = require_input_file(path, "an image")
    try:
        with warnings.catch_warnings():  # Pillow's own size warning: the limit below is the one that applies
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            check_frame_size(*image.size, f"image '{path}' of")
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb8(image)
    except Image.DecompressionBombError as error:
        raise SfiError(f"image '{path}' is too large ({error}); {SIZE_LIMIT}") from None
    except UnidentifiedImageError:
        raise SfiError(f"input '{path}' is not an image Pillow can read (PNG, JPEG, TIFF, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise SfiError(f"input '{path}' is truncated or corrupt ({error}); export it again") from None


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to 8-bit RGB, keeping the full tonal range of 16/32-bit data."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        data = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or data.max(initial=0) > 255 else 255.0
        gray = np.clip(np.round(data / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def resize_to(frame: np.ndarray, size: tuple[int, int], fit: str = "cover") -> np.ndarray:
    """Bring a frame to ``size`` (width, height).

    cover: scale to fill, centre-crop the overflow (no bars, no distortion);
    contain: scale to fit inside, pad with black bars; stretch: scale each axis.
    """
    width, height = size
    source_height, source_width = frame.shape[:2]
    if (source_width, source_height) == (width, height):
        return frame
    image = Image.fromarray(frame)
    if fit == "stretch":
        return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))
    scale_of = max if fit == "cover" else min
    scale = scale_of(width / source_width, height / source_height)
    scaled_size = (max(1, round(source_width * scale)), max(1, round(source_height * scale)))
    scaled = image.resize(scaled_size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(scaled, ((width - scaled_size[0]) // 2, (height - scaled_size[1]) // 2))
    return np.asarray(canvas)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` into (width, height) of positive integers."""
    parts = text.lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        width, height = (int(p) for p in parts)
        if width > 0 and height > 0:
            check_frame_size(width, height, "size")
            return width, height
    raise SfiError(f"bad size '{text}': use WIDTHxHEIGHT with positive whole numbers, e.g. 1280x720")
