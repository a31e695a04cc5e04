"""How pictures change form between footage (YUV in the source's matrix and range) and the
engines (RGB), and how an output is tagged: every colour conversion sfi asks ffmpeg for is built here.

Conversions name both sides' matrix and range explicitly and go through zscale (zimg)
when the ffmpeg has it: a frame taken from YUV to RGB and back comes back at the same
code values. swscale's default YUV->RGB path (no full chroma interpolation) made every
generated frame 1 to 2 levels of Y darker than the footage around it, so a slowed-down shot
pulsed; where zscale is missing swscale is used with ``accurate_rnd+full_chroma_int``, which
fixes limited-range 8-bit footage but leaves full-range chroma (and 10-bit full-range luma)
about half a level off.

The codecs sfi writes are one table, ``CODECS``: their encoder, containers, pixel formats
and quality (CRF, or ProRes profile) feed ``sfi render``/``fill`` and ``sfi interpolate`` alike.

Sources deeper than 8 bits travel as 16-bit RGB (``rgb48le``, uint16 arrays), so an
engine's in-betweens keep the source's precision; 8-bit sources as ``rgb24`` (uint8).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from engines.base import at_depth  # noqa: F401 (media code takes it from here)
from sfi_cli.errors import SfiError

# swscale's names for the YUV matrices ffmpeg reports (zscale takes ffmpeg's own names).
SWSCALE_MATRICES = {"bt709": "bt709", "bt470bg": "bt470", "smpte170m": "smpte170m", "fcc": "fcc",
                    "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}
UNTAGGED_MATRIX = "smpte170m"  # what ffmpeg assumes for a video that does not say (BT.601)
# Frame layouts that travel as HxWx3 arrays, with their array type; any other ffmpeg pixel format
# (yuv420p, yuv422p10le, ...) travels as a flat uint8 array of one frame's bytes.
RGB_DTYPES = {"rgb24": np.dtype(np.uint8), "bgr24": np.dtype(np.uint8), "rgb48le": np.dtype(np.uint16)}
RGB_FORMATS = {RGB_DTYPES[name]: name for name in ("rgb24", "rgb48le")}  # the engines' RGB, by array type


def rgb_format(bit_depth: int) -> str:
    """The RGB layout engines get for footage of ``bit_depth`` bits."""
    return RGB_FORMATS[np.dtype(np.uint16 if bit_depth > 8 else np.uint8)]


def rgb_format_of(frame: np.ndarray) -> str:
    """The ffmpeg layout of an engine's RGB frame, by its dtype."""
    return RGB_FORMATS[frame.dtype]


@lru_cache(maxsize=8)
def has_zscale(ffmpeg: str) -> bool:
    """Whether this ffmpeg was built with zimg (the exact converter)."""
    listing = subprocess.run([ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    return any(line.split()[1:2] == ["zscale"] for line in listing.splitlines() if line.strip())


def _planar(rgb: str) -> str:
    return "gbrp16le" if rgb == "rgb48le" else "gbrp"


def yuv_to_rgb(matrix: str, color_range: str, rgb: str, ffmpeg: str) -> str:
    """ffmpeg filters reading YUV of ``matrix``/``color_range`` into full-range RGB ``rgb``."""
    if has_zscale(ffmpeg):
        return f"zscale=matrixin={matrix}:rangein={color_range}:range=pc,format={_planar(rgb)},format={rgb}"
    return (f"scale=in_color_matrix={SWSCALE_MATRICES.get(matrix, 'bt601')}:in_range={color_range}:out_range=pc:"
            f"flags=accurate_rnd+full_chroma_int+full_chroma_inp,format={rgb}")


def rgb_to_yuv(rgb: str, matrix: str, color_range: str, pix_fmt: str, ffmpeg: str) -> str:
    """ffmpeg filters turning full-range RGB ``rgb`` into ``pix_fmt`` YUV of ``matrix``/``color_range``."""
    if has_zscale(ffmpeg):
        return f"format={_planar(rgb)},zscale=matrix={matrix}:range={color_range}:rangein=pc,format={pix_fmt}"
    return (f"scale=out_color_matrix={SWSCALE_MATRICES.get(matrix, 'bt601')}:out_range={color_range}:"
            f"flags=accurate_rnd+full_chroma_int,format={pix_fmt}")


def yuv_to_yuv(source: tuple[str, str], target: tuple[str, str], ffmpeg: str) -> str:
    """ffmpeg filters bringing footage of (matrix, range) ``source`` to ``target``'s."""
    (matrix_in, range_in), (matrix, color_range) = source, target
    if has_zscale(ffmpeg):
        return f"zscale=matrixin={matrix_in}:rangein={range_in}:matrix={matrix}:range={color_range}"
    return (f"scale=in_color_matrix={SWSCALE_MATRICES.get(matrix_in, 'bt601')}:in_range={range_in}:"
            f"out_color_matrix={SWSCALE_MATRICES.get(matrix, 'bt601')}:out_range={color_range}:"
            f"flags=accurate_rnd+full_chroma_int")


def even_padding(size: tuple[int, int], pix_fmt: str) -> tuple[int, int]:
    """Columns and rows to add so ``pix_fmt``'s chroma subsampling fits (4:2:0 needs even sizes, 4:2:2 an even
    width): footage is padded by repeating its edge, never resampled."""
    width, height = size
    return (width % 2 if pix_fmt.startswith(("yuv420", "yuv422")) else 0,
            height % 2 if pix_fmt.startswith("yuv420") else 0)


@lru_cache(maxsize=16)
def _plane_padding(pix_fmt: str, picture: tuple[int, int], size: tuple[int, int]):
    """The sample type of ``pix_fmt`` and, per plane, its (height, width) at ``picture`` size and the rows and
    columns it gains at ``size``: worked out once, not for every frame of odd-sized footage."""
    import av

    inner, outer = av.VideoFormat(pix_fmt, *picture).components, av.VideoFormat(pix_fmt, *size).components
    dtype = np.dtype(np.uint16 if any(c.bits > 8 for c in inner) else np.uint8)
    return dtype, tuple(((i.height, i.width), ((0, o.height - i.height), (0, o.width - i.width)))
                        for i, o in zip(inner, outer))


def pad_frame(frame: np.ndarray, pix_fmt: str, picture: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A flat raw planar frame of ``picture`` size grown to ``size`` by repeating each plane's right column and
    bottom row. Done here, plane by plane, because ffmpeg's pad filter drops the last column of an odd-width
    4:2:0 picture."""
    dtype, planes = _plane_padding(pix_fmt, tuple(picture), tuple(size))
    samples, padded, offset = frame.view(dtype), [], 0
    for (height, width), padding in planes:
        plane = samples[offset:offset + height * width].reshape(height, width)
        offset += height * width
        padded.append(np.pad(plane, padding, mode="edge").ravel())
    return np.concatenate(padded).view(np.uint8)


def padding_warning(size: tuple[int, int], pad: tuple[int, int], codec: str) -> str:
    return (f"the pictures are {size[0]}x{size[1]}, and {codec} needs even sizes: the output is "
            f"{size[0] + pad[0]}x{size[1] + pad[1]}, its last column/row repeated (crop it off to get the source size back)")


def picture_warnings(size: tuple[int, int], pad: tuple[int, int], pix_fmt: str, codec: str, primary, infos, *,
                     keep_rotation: bool = False, images: Sequence[Path] = ()) -> list[str]:
    """What the output cannot keep exactly as the sources have it (``primary``: the first video's MediaInfo;
    ``infos``: every video's; ``images``: the image files, whose pixels are square)."""
    warnings = [padding_warning(size, pad, f"{codec} {pix_fmt}")] if any(pad) else []
    if primary is None:
        return warnings
    name = primary.path.name
    if primary.field_order:
        warnings.append(f"'{name}' is interlaced ({FIELD_ORDER_NAMES[primary.field_order]}): the output keeps that "
                        f"flag, but generated frames are progressive pictures")
    if primary.hdr and codec == "prores":
        warnings.append(f"'{name}' carries HDR10 metadata (mastering display, content light level) that this ffmpeg "
                        f"cannot write into ProRes: the output lacks it; use codec h264 or h265 to keep it")
    sar = primary.display_sar(keep_rotation)
    shapes = [*((info.path.name, info.display_sar(keep_rotation)) for info in infos),
              *((image.name, Fraction(1)) for image in images)]
    warnings += [f"'{other}' has pixel aspect {shape.numerator}:{shape.denominator}, the output "
                 f"{sar.numerator}:{sar.denominator} (from '{name}'): it is fitted by its display aspect"
                 for other, shape in shapes if shape != sar]
    return warnings


def hdr_params(codec: str, hdr) -> list[str]:
    """x264/x265 parameters writing HDR10 static metadata (``hdr``: a probe ``HdrMetadata``); ProRes has none."""
    if hdr is None or codec not in ("h264", "h265"):
        return []
    names = {"h264": ("mastering-display", "cll"), "h265": ("master-display", "max-cll")}[codec]
    return [f"{name}={value}" for name, value in zip(names, (hdr.master_display, hdr.max_cll)) if value]


FIELD_ORDER_NAMES = {"tt": "top field first", "bb": "bottom field first", "tb": "top field first, coded bottom first",
                     "bt": "bottom field first, coded top first"}


# The standard colour description of new video made from RGB pictures (sfi interpolate):
# BT.709 for HD and larger, BT.601 (SMPTE 170M) for SD, limited range as players expect.
HD_WIDTH, HD_HEIGHT = 1280, 720


def picture_standard(width: int, height: int) -> str:
    """"bt709" for HD and larger (height >= 720 or width >= 1280), else "smpte170m" (SD)."""
    return "bt709" if height >= HD_HEIGHT or width >= HD_WIDTH else "smpte170m"


def standard_encoding(rgb: str, pix_fmt: str, size: tuple[int, int], ffmpeg: str) -> list[str]:
    """ffmpeg output options encoding RGB pictures of ``size`` as limited-range ``pix_fmt`` in their size's
    standard, and tagging the video with it (matrix, primaries, transfer, range)."""
    standard = picture_standard(*size)
    tags = f"setparams=colorspace={standard}:color_primaries={standard}:color_trc={standard}:range=tv"
    return ["-vf", f"{rgb_to_yuv(rgb, standard, 'tv', pix_fmt, ffmpeg)},{tags}", "-colorspace", standard,
            "-color_primaries", standard, "-color_trc", standard, "-color_range", "tv"]


@dataclass(frozen=True)
class Codec:
    """A video codec sfi writes: its ffmpeg encoder, the containers that take it, and its quality when the
    recipe names none (None: the config's CRF)."""

    encoder: str
    suffixes: tuple[str, ...]
    default_quality: int | None = None


PRORES_HQ = 3  # ProRes profiles: 0 proxy, 1 LT, 2 standard, 3 HQ, 4 4444
CODECS = {"h264": Codec("libx264", (".mp4", ".mov", ".mkv")), "h265": Codec("libx265", (".mp4", ".mov", ".mkv")),
          "prores": Codec("prores_ks", (".mov", ".mkv"), PRORES_HQ), "ffv1": Codec("ffv1", (".mkv",)),
          "png": Codec("png", (), 0)}  # a PNG sequence: a folder (frames/) or a pattern (frames/name_%06d.png)
CODEC_BY_SUFFIX = {".mp4": "h264", ".mov": "prores", ".mkv": "h264"}  # a container's usual codec


def is_sequence(output: Path) -> bool:
    """Whether ``output`` names a PNG sequence (a folder, a name without suffix, or a %d .png pattern)."""
    import re

    output = Path(output)
    if re.search(r"%0?\d*d", output.name):
        return output.suffix.lower() == ".png"
    return not output.suffix or output.is_dir()


def output_codec(output: Path, wanted: str | None) -> str:
    """The codec for ``output``: ``wanted`` if the container takes it, else the container's usual one (a folder
    or a %d pattern takes a PNG sequence)."""
    suffix = output.suffix.lower()
    if suffix not in CODEC_BY_SUFFIX and is_sequence(output):
        if wanted not in (None, "png"):
            raise SfiError(f"codec {wanted} writes a video file, not the PNG sequence '{output}'; give a .mp4, .mov "
                           f"or .mkv output (or --codec png)")
        return "png"
    if wanted == "png":
        raise SfiError(f"--codec png writes a PNG sequence, not '{output.name}': give -o a folder (frames/) or a "
                       f"pattern (frames/name_%06d.png)")
    codec = wanted or CODEC_BY_SUFFIX.get(suffix)
    if codec is None or suffix not in CODEC_BY_SUFFIX:
        raise SfiError(f"output '{output}' must end in .mp4, .mov or .mkv (or be a folder or frames/name_%06d.png "
                       f"for a PNG sequence)")
    if suffix not in CODECS[codec].suffixes:
        raise SfiError(f"codec {codec} cannot be written to '{output.name}': use {' or '.join(CODECS[codec].suffixes)}")
    return codec


def output_pix_fmt(codec: str, source=None) -> str:
    """The pixel format of ``source`` (a probe ``MediaInfo``) where the codec has it, else the nearest it has
    (ProRes is always 10-bit 4:2:2/4:4:4); without a source (pictures), the codec's usual delivery format."""
    chroma = source.chroma if source else "420"
    deep = bool(source and source.bit_depth > 8)
    if codec == "png":  # footage decoded at full chroma, each PNG made from it in RGB (16-bit for deep footage)
        return "yuv444p10le" if deep else "yuv444p"
    if codec == "prores":
        return "yuv444p10le" if chroma == "444" else "yuv422p10le"
    if chroma == "gray":
        chroma = "420"
    return f"yuv{chroma}p" + ("10le" if deep else "")


def codec_pix_fmt(suffix: str) -> str:
    """The pixel format pictures are written in to a container with its usual codec."""
    return output_pix_fmt(CODEC_BY_SUFFIX[suffix])


def quality_for(codec: str, crf: int) -> int:
    """The quality a codec gets when nothing names one: the config's CRF, or ProRes HQ."""
    default = CODECS[codec].default_quality
    return crf if default is None else default


def encoder_options(codec: str, pix_fmt: str, quality: int, preset: str, *, suffix: str, hdr=None,
                    interlaced: bool = False) -> dict[str, object]:
    """ffmpeg output options (name without '-': value) encoding ``pix_fmt`` with ``codec`` at ``quality``
    (CRF, or ProRes profile; 4:4:4 takes the 4444 profile); ``hdr`` is a probe ``HdrMetadata``."""
    if codec == "prores":
        profile = 4 if pix_fmt.startswith("yuv444") else quality
        return {"c:v": CODECS[codec].encoder, "profile:v": profile, "vendor": "apl0", "pix_fmt": pix_fmt}
    if codec == "ffv1":  # lossless: no quality or speed to choose; slices let it use every core
        return {"c:v": "ffv1", "level": 3, "slices": 16, "g": 1, "pix_fmt": pix_fmt}
    options: dict[str, object] = {"c:v": CODECS[codec].encoder, "crf": quality, "preset": preset, "pix_fmt": pix_fmt}
    params = hdr_params(codec, hdr)
    if codec == "h265":
        options.update({"tag:v": "hvc1", "x265-params": ":".join(["log-level=error", *params])})
    elif params:
        options["x264-params"] = ":".join(params)
    if interlaced and codec == "h264":
        options["flags"] = "+ildct+ilme"  # coded as interlaced, as the source was
    if suffix == ".mp4":
        options["movflags"] = "+faststart"
    return options


def as_arguments(options: dict[str, object]) -> list[str]:
    """``encoder_options`` as an ffmpeg command line's words."""
    return [word for name, value in options.items() for word in (f"-{name}", str(value))]
