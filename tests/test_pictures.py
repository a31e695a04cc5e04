"""Exact pictures: generated frames at the levels of real ones, standard colour tags, pixel aspect,
odd sizes, field order, HDR10 metadata, VFR rates and 10-bit precision through the engines."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from clips import decode_all, encode_yuv, flat_planes, frame_index, make_clip, video_facts, yuv_planes
from sfi_cli.media.probe import probe

COLOUR = (143, 91, 86)  # the flat colour the issue saw come back as (140, 90, 84)
MATRICES = {"bt709": (0.2126, 0.0722), "smpte170m": (0.299, 0.114)}  # (Kr, Kb)


def rgb_to_yuv_codes(rgb, matrix: str, full: bool, bits: int) -> tuple[int, int, int]:
    """The code values a correct encoder gives a flat RGB colour (the standard formulas)."""
    kr, kb = MATRICES[matrix]
    r, g, b = (c / 255 for c in rgb)
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    scale = 1 << (bits - 8)
    if full:
        top = (1 << bits) - 1
        return round(y * top), round((cb + 0.5) * top), round((cr + 0.5) * top)
    return round((16 + 219 * y) * scale), round((128 + 224 * cb) * scale), round((128 + 224 * cr) * scale)


def yuv_codes_to_rgb(yuv, matrix: str, full: bool, bits: int) -> np.ndarray:
    kr, kb = MATRICES[matrix]
    scale = 1 << (bits - 8)
    if full:
        top = (1 << bits) - 1
        y, cb, cr = yuv[0] / top, yuv[1] / top - 0.5, yuv[2] / top - 0.5
    else:
        y, cb, cr = (yuv[0] / scale - 16) / 219, (yuv[1] / scale - 128) / 224, (yuv[2] / scale - 128) / 224
    r, b = y + 2 * (1 - kr) * cr, y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return np.array([r, g, b]) * 255


def render(sfi, recipe_path, text: str, *args):
    recipe_path.write_text(text)
    result = sfi("render", recipe_path, "--json", "--work-dir", recipe_path.parent / "work", *args)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("pix_fmt, color_range, engine", [
    ("yuv420p", "tv", "crossfade"), ("yuv420p", "tv", "flow"), ("yuv420p", "pc", "crossfade"),
    ("yuv420p10le", "tv", "crossfade"), ("yuv420p10le", "tv", "flow"), ("yuv420p10le", "pc", "crossfade")])
def test_slow_motion_of_a_flat_colour_keeps_its_levels(tmp_path, ffmpeg_exe, sfi, pix_fmt, color_range, engine):
    bits = 10 if "10" in pix_fmt else 8
    codes = rgb_to_yuv_codes(COLOUR, "bt709", color_range == "pc", bits)
    encode_yuv(tmp_path / "flat.mp4", ffmpeg_exe, [flat_planes(64, 36, codes, pix_fmt)] * 3, pix_fmt=pix_fmt,
               tags=("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
                     "-color_range", color_range))
    render(sfi, tmp_path / "r.toml", '[output]\npath = "slow.mp4"\nquality = 0\n\n'
           '[[shot]]\nvideo = "flat.mp4"\nslowmo = 3\n', "--engine", engine)
    frames = yuv_planes(tmp_path / "slow.mp4")
    assert len(frames) == 3 + 2 * 2
    means = np.array([[plane.astype(np.float64).mean() for plane in frame] for frame in frames]) / (1 << (bits - 8))
    real, generated = means[0::3], np.delete(means, [0, 3, 6], axis=0)
    assert np.allclose(real, np.array(codes) / (1 << (bits - 8)), atol=0.25)  # the real frames are the source's
    difference = np.abs(generated - real.mean(axis=0)).mean(axis=0)  # mean |dY|, |dU|, |dV| in 8-bit levels
    assert (difference < 0.25).all(), f"generated frames differ from real ones by {difference} levels (Y, U, V)"


@pytest.mark.parametrize("size, standard", [((64, 36), "smpte170m"), ((1280, 720), "bt709")])
@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_interpolate_encodes_and_tags_the_standard_of_its_size(tmp_path, sfi, size, standard, suffix):
    for name in ("a.png", "b.png"):
        Image.new("RGB", size, COLOUR).save(tmp_path / name)
    out = tmp_path / f"out{suffix}"
    result = sfi("interpolate", tmp_path / "a.png", tmp_path / "b.png", "-n", "1", "-o", out, "--engine", "crossfade")
    assert result.code == 0, result.stderr
    facts = video_facts(out)
    assert facts["size"] == size
    codes = {"bt709": 1, "smpte170m": 6}[standard]
    assert (facts["colorspace"], facts["primaries"], facts["trc"], facts["range"]) == (codes, codes, codes, 1)
    bits = 10 if "10" in facts["pix_fmt"] else 8
    yuv = [plane.astype(np.float64).mean() for plane in yuv_planes(out)[1]]
    decoded = yuv_codes_to_rgb(yuv, standard, False, bits)
    assert np.abs(decoded - COLOUR).max() < 1.0, decoded  # encoded with the matrix it is tagged with
    other = "bt709" if standard == "smpte170m" else "smpte170m"
    assert np.abs(yuv_codes_to_rgb(yuv, other, False, bits) - COLOUR).max() > 3  # (the check tells the two apart)


def with_sar(source, target, ffmpeg: str, sar: str):
    """``source`` re-encoded with pixel aspect ``sar`` (sound and pictures otherwise as they are)."""
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(source), "-vf", f"setsar=sar={sar.replace(':', '/')}:max=1000", "-c:v", "libx264",
                    "-crf", "10", "-preset", "veryfast", "-c:a", "copy", str(target)], check=True)
    return target


@pytest.fixture(scope="module")
def anamorphic_clips(tmp_path_factory):
    """A 72x58 clip with cuts at 10 and 20 (and plain.mp4, square pixels), with SAR 64:45 (PAL 16:9), 4:3 and 208:207
    (terms over 100, as a scaled clip's can be)."""
    from sfi_cli.media.ffmpeg import find_ffmpeg

    ffmpeg = find_ffmpeg()
    folder = tmp_path_factory.mktemp("sar")
    plain = make_clip(folder / "plain.mp4", ffmpeg, frames=30, cuts=(10, 20), size=(72, 58))
    return {sar: with_sar(plain, folder / f"sar{sar.replace(':', '_')}.mp4", ffmpeg, sar) for sar in ("64:45", "4:3", "208:207")}


@pytest.mark.parametrize("sar", ["64:45", "4:3"])
@pytest.mark.parametrize("mode", ["insert", "replace"])
def test_fill_keeps_the_pixel_aspect(tmp_path, sfi, anamorphic_clips, sar, mode):
    clip = anamorphic_clips[sar]
    assert probe(clip).sar == Fraction(sar.replace(":", "/"))
    out = tmp_path / "out.mp4"
    result = sfi("fill", clip, "-o", out, "--engine", "crossfade", "--frames", "2", "--mode", mode)
    assert result.code == 0, result.stderr
    facts = video_facts(out)
    assert facts["sar"] == Fraction(sar.replace(":", "/")) and facts["size"] == (72, 58)


def test_retime_keeps_a_pixel_aspect_of_large_terms(tmp_path, sfi, anamorphic_clips):
    """ffmpeg's setsar rounds to terms of at most 100 unless told otherwise: 208:207 must not become 1:1."""
    out = tmp_path / "out.mp4"
    result = sfi("retime", anamorphic_clips["208:207"], "-o", out, "--engine", "crossfade", "--slowmo", "1.5", "-q")
    assert result.code == 0, result.stderr
    assert video_facts(out)["sar"] == Fraction(208, 207)


def test_render_keeps_the_first_videos_pixel_aspect_and_fits_others_by_display_aspect(tmp_path, sfi, anamorphic_clips,
                                                                                       ffmpeg_exe):
    wide, plain = anamorphic_clips["64:45"], anamorphic_clips["64:45"].with_name("plain.mp4")
    summary = render(sfi, tmp_path / "r.toml", f'[output]\npath = "mixed.mp4"\n\n'
                     f'[[shot]]\nvideo = "{wide}"\nout = 10\n\n[shot.transition]\nframes = 2\n\n'
                     f'[[shot]]\nvideo = "{plain}"\nin = 10\nout = 20\n', "--engine", "crossfade")
    facts = video_facts(tmp_path / "mixed.mp4")
    assert facts["sar"] == Fraction(64, 45) and facts["size"] == (72, 58)
    assert any("plain.mp4" in w and "display aspect" in w for w in summary["warnings"]), summary["warnings"]
    # the anamorphic shot's own frames are there as they were (each still says which frame it is)
    assert [frame_index(f) for f in decode_all(tmp_path / "mixed.mp4", ffmpeg_exe)[:10]] == list(range(10))


def textured_planes(width: int, height: int, seed: int, pix_fmt: str) -> list[np.ndarray]:
    """Random (so any resampling shows) planes of ``pix_fmt``."""
    rng = np.random.default_rng(seed)
    planes = flat_planes(width, height, (0, 0, 0), pix_fmt)
    return [rng.integers(16, 236, plane.shape, dtype=np.int64).astype(plane.dtype) for plane in planes]


@pytest.mark.parametrize("size, pix_fmt", [((65, 37), "yuv420p"), ((65, 37), "yuv444p"), ((1281, 721), "yuv420p")])
def test_odd_sized_footage_keeps_every_pixel(tmp_path, ffmpeg_exe, sfi, size, pix_fmt):
    width, height = size
    source = [textured_planes(width, height, seed, pix_fmt) for seed in range(6)]
    encode_yuv(tmp_path / "odd.mkv", ffmpeg_exe, source, pix_fmt=pix_fmt, codec=("-c:v", "ffv1"))
    summary = render(sfi, tmp_path / "r.toml", '[output]\npath = "out.mp4"\nquality = 0\npreset = "ultrafast"\n\n'
                     '[[shot]]\nvideo = "odd.mkv"\nout = 3\n\n[shot.transition]\nframes = 1\n\n'
                     '[[shot]]\nvideo = "odd.mkv"\nin = 3\n', "--engine", "crossfade")
    padded = pix_fmt == "yuv420p"
    facts = video_facts(tmp_path / "out.mp4")
    assert facts["size"] == ((width + 1, height + 1) if padded else size)
    assert any("even sizes" in w for w in summary["warnings"]) == padded, summary["warnings"]
    frames = yuv_planes(tmp_path / "out.mp4")
    untouched = {0: 0, 1: 1, 2: 2, 4: 3, 5: 4, 6: 5}  # output frame: source frame (3 is generated)
    for out_index, source_index in untouched.items():
        for plane, original in zip(frames[out_index], source[source_index]):
            rows, columns = original.shape
            assert np.array_equal(plane[:rows, :columns], original), (out_index, plane.shape)
        if padded:  # the added column and row repeat the edge
            luma = frames[out_index][0]
            assert np.array_equal(luma[:, width], luma[:, width - 1]) and np.array_equal(luma[height], luma[height - 1])


def test_interlaced_footage_keeps_its_field_order(tmp_path, ffmpeg_exe, sfi):
    encode_yuv(tmp_path / "fields.mp4", ffmpeg_exe, [textured_planes(64, 36, s, "yuv420p") for s in range(4)],
               pix_fmt="yuv420p", codec=("-c:v", "libx264", "-crf", "10", "-flags", "+ildct+ilme"),
               extra=("-field_order", "tt"))
    assert probe(tmp_path / "fields.mp4").field_order == "tt"
    summary = render(sfi, tmp_path / "r.toml", '[output]\npath = "out.mp4"\n\n[[shot]]\nvideo = "fields.mp4"\nslowmo = 2\n',
                     "--engine", "crossfade")
    assert probe(tmp_path / "out.mp4").field_order == "tt"
    assert any("interlaced" in w and "progressive" in w for w in summary["warnings"]), summary["warnings"]


MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


@pytest.mark.parametrize("codec", ["h264", "h265", "prores"])
def test_hdr10_metadata_is_kept(tmp_path, ffmpeg_exe, sfi, codec):
    encode_yuv(tmp_path / "hdr.mp4", ffmpeg_exe, [flat_planes(64, 36, (500, 480, 560), "yuv420p10le")] * 3,
               pix_fmt="yuv420p10le",
               codec=("-c:v", "libx265", "-x265-params", f"log-level=error:master-display={MASTER_DISPLAY}:max-cll=1000,400"),
               tags=("-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc"))
    source = probe(tmp_path / "hdr.mp4")
    assert (source.hdr.master_display, source.hdr.max_cll) == (MASTER_DISPLAY, "1000,400")
    suffix = ".mov" if codec == "prores" else ".mp4"
    summary = render(sfi, tmp_path / "r.toml", f'[output]\npath = "out{suffix}"\ncodec = "{codec}"\n\n'
                     '[[shot]]\nvideo = "hdr.mp4"\nslowmo = 2\n', "--engine", "crossfade")
    out = probe(tmp_path / f"out{suffix}")
    assert (out.color.primaries, out.color.trc, out.color.space) == ("bt2020", "smpte2084", "bt2020nc")
    if codec == "prores":
        assert out.hdr is None and any("HDR10" in w for w in summary["warnings"]), summary["warnings"]
    else:
        assert out.hdr == source.hdr and not any("HDR10" in w for w in summary["warnings"])


def test_variable_rate_snaps_to_the_nearest_standard_rate(tmp_path, ffmpeg_exe):
    clip = tmp_path / "vfr.mp4"
    # 24 fps with every fifth frame held twice as long: the typical frame lasts 1/24 s
    subprocess.run([ffmpeg_exe, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=64x36:r=24:d=1",
                    "-c:v", "libx264", "-bf", "0", "-enc_time_base", "1/24000", "-fps_mode", "passthrough",
                    "-bsf:v", "setts=pts=PTS+floor(N/5)*1000/(24000*TB)", str(clip)], check=True)
    info = probe(clip)
    assert info.vfr and info.rate == 24


def ramp_planes(width: int, offset: int) -> list[np.ndarray]:
    """A 10-bit 4:2:0 luma ramp over the legal range (64..940), ``offset`` codes brighter, grey chroma."""
    luma = np.clip(np.rint(np.linspace(64, 940 - 64, width)) + offset, 64, 940).astype(np.uint16)
    return [np.tile(luma, (8, 1)), np.full((4, width // 2), 512, np.uint16), np.full((4, width // 2), 512, np.uint16)]


@pytest.mark.parametrize("engine", ["crossfade", "flow"])
def test_ten_bit_ramp_keeps_ten_bit_precision(tmp_path, ffmpeg_exe, sfi, engine):
    width = 1024
    frames = [ramp_planes(width, 0), ramp_planes(width, 64)]
    encode_yuv(tmp_path / "ramp10.mp4", ffmpeg_exe, frames, pix_fmt="yuv420p10le",
               tags=("-colorspace", "bt709", "-color_range", "tv"))
    eight = [[np.rint(p / 4).astype(np.uint8) for p in planes] for planes in frames]  # the same ramp, 8-bit
    encode_yuv(tmp_path / "ramp8.mp4", ffmpeg_exe, eight, pix_fmt="yuv420p", tags=("-colorspace", "bt709"))
    distinct, error = {}, {}
    for name, scale in (("ramp10", 1), ("ramp8", 4)):
        render(sfi, tmp_path / f"{name}.toml", f'[output]\npath = "{name}-slow.mp4"\nquality = 0\n\n'
               f'[[shot]]\nvideo = "{name}.mp4"\nslowmo = 2\n', "--engine", engine)
        first, middle, last = yuv_planes(tmp_path / f"{name}-slow.mp4")
        generated = middle[0][2:-2].astype(np.int64) * scale  # in 10-bit codes, rows away from the edges
        ideal = (frames[0][0][2:-2].astype(np.int64) + frames[1][0][2:-2]) / 2
        distinct[name] = len(np.unique(generated))
        error[name] = np.abs(generated - ideal).max()
    print(f"{engine}: distinct values 8-bit path {distinct['ramp8']}, 16-bit path {distinct['ramp10']}; "
          f"max error vs the ideal ramp (10-bit codes) 8-bit path {error['ramp8']}, 16-bit path {error['ramp10']}")
    assert distinct["ramp10"] >= 3 * distinct["ramp8"]
    assert error["ramp10"] <= 2
    # the work folder kept the gap at 16 bits: a second run reads it back to the same output
    summary = render(sfi, tmp_path / "ramp10.toml", '[output]\npath = "again.mp4"\nquality = 0\n\n'
                     '[[shot]]\nvideo = "ramp10.mp4"\nslowmo = 2\n', "--engine", engine)
    assert summary["gaps_cached"] == 1
    assert np.array_equal(yuv_planes(tmp_path / "again.mp4")[1][0], yuv_planes(tmp_path / "ramp10-slow.mp4")[1][0])


def test_semfi_delivery_brings_8_bit_model_frames_to_16_bit_ends():
    """SemFi's model works in 8 bits; its frames are delivered at the ends' depth with their colour drift
    corrected there, so a 16-bit gap holds more values than 8 bits can (the model's own detail stays 8-bit)."""
    from engines.flow import FlowEngine
    from engines.semfi_parts.delivery import deliver

    ramp = np.linspace(0, 65535, 1024)
    first = np.repeat(np.rint(ramp).astype(np.uint16)[None, :, None], 8, axis=0).repeat(3, axis=2)
    last = np.clip(first.astype(np.int64) + 3000, 0, 65535).astype(np.uint16)
    model = [np.rint(frame / 257).astype(np.uint8) for frame in (first, (first / 2 + last / 2), last)]
    frames = list(deliver(model, first, last, 1, FlowEngine().between))
    assert len(frames) == 1 and frames[0].dtype == np.uint16
    assert len(np.unique(frames[0][..., 0])) > 256
    assert np.abs(frames[0].astype(np.float64) - (first / 2 + last / 2)).max() < 257
