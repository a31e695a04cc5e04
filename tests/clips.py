"""Test clips made with ffmpeg: hard cuts at known frames, each frame's number written into it.

The bottom strip of every frame holds its index as 10 black/white cells (Gray code, so
neighbouring frames differ in one cell and detectors see no jump), big enough to survive
compression: a decoded frame says which source frame it is. Above it, each
shot shows its own random texture drifting one pixel a frame: detectors see a hard cut
exactly where a new shot starts, and nothing else.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BITS = 10
STRIP = 12  # rows of the index strip


def shot_texture(shot: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + shot)
    small = rng.integers(0, 256, size=(max(2, height // 12), max(2, width // 12) + 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width + 48, height), Image.Resampling.BICUBIC))


def clip_frame(index: int, shot: int, width: int, height: int, textures: dict[int, np.ndarray]) -> np.ndarray:
    if shot not in textures:
        textures[shot] = shot_texture(shot, width, height - STRIP)
    phase = index % 96
    offset = phase if phase < 48 else 96 - phase  # drifts back and forth, never jumps
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[: height - STRIP] = textures[shot][:, offset: offset + width]
    cell = width // BITS
    gray = index ^ (index >> 1)
    for bit in range(BITS):
        value = 255 if (gray >> bit) & 1 else 0
        frame[height - STRIP:, bit * cell:(bit + 1) * cell] = value
    return frame


def frame_index(frame: np.ndarray) -> int:
    """The index written into a frame by ``clip_frame`` (read from the cell centres)."""
    height, width = frame.shape[:2]
    cell = width // BITS
    strip = frame[height - STRIP + 3: height - 3].astype(np.float32).mean(axis=(0, 2))
    gray = sum(1 << bit for bit in range(BITS) if strip[bit * cell + 3: (bit + 1) * cell - 3].mean() > 127)
    index = 0
    while gray:
        index ^= gray
        gray >>= 1
    return index


def make_clip(path: Path, ffmpeg: str, *, frames: int = 90, cuts: tuple[int, ...] = (30, 60), rate: str = "25",
              size: tuple[int, int] = (192, 128), audio: bool = True, subtitles: bool = False,
              timecode: str | None = None, rotation: int | None = None, pix_fmt: str = "yuv420p",
              color: bool = False, vfr: bool = False) -> Path:
    """Write a clip with hard cuts at ``cuts``; returns ``path``."""
    width, height = size
    fps = Fraction(rate)
    seconds = frames / fps
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    if rotation is not None:
        command += ["-display_rotation:v:0", str(rotation), "-noautorotate"]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", rate, "-i", "pipe:0"]
    maps = ["-map", "0:v"]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={float(seconds):.6f}"]
        maps += ["-map", "1:a"]
    if subtitles:
        srt = path.with_suffix(".srt")
        srt.write_text("1\n00:00:00,200 --> 00:00:00,800\nfirst line\n\n"
                       f"2\n00:00:{float(seconds) - 0.6:06.3f} --> 00:00:{float(seconds) - 0.2:06.3f}\nlast line\n".replace(".", ","))
        command += ["-i", str(srt)]
        maps += ["-map", f"{1 + audio}:s"]
    command += maps + ["-c:v", "libx264", "-crf", "10", "-preset", "veryfast", "-g", "24", "-pix_fmt", pix_fmt]
    if vfr:
        # Every fifth frame lasts twice as long: a variable frame rate.
        command += ["-bf", "0", "-enc_time_base", "1/1000", "-bsf:v",
                    f"setts=pts=PTS+floor(N/5)*{round(1000 / float(fps))}/(1000*TB)", "-fps_mode", "passthrough"]
    if color:
        command += ["-vf", "scale=out_color_matrix=bt709,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"]
    if audio:
        command += ["-c:a", "aac", "-b:a", "96k"]
    if subtitles:
        command += ["-c:s", "mov_text"]
    if timecode:
        command += ["-timecode", timecode]
    command.append(str(path))
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    textures: dict[int, np.ndarray] = {}
    bounds = sorted(cuts)
    for index in range(frames):
        shot = sum(1 for cut in bounds if cut <= index)
        process.stdin.write(clip_frame(index, shot, width, height, textures).tobytes())
    process.stdin.close()
    assert process.wait() == 0, f"ffmpeg failed making {path}"
    return path


def decode_all(path: Path, ffmpeg: str, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Every frame of the first video stream as RGB, decoded by ffmpeg (small clips only)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        width, height = size or (stream.codec_context.width, stream.codec_context.height)
    out = subprocess.run([ffmpeg, "-v", "error", "-noautorotate", "-i", str(path), "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    frame_bytes = width * height * 3
    return [np.frombuffer(out[i:i + frame_bytes], np.uint8).reshape(height, width, 3)
            for i in range(0, len(out), frame_bytes)]


def stream_facts(path: Path) -> dict:
    """Durations (seconds, from the container) and stream facts of a file, via PyAV."""
    import av

    with av.open(str(path)) as container:
        facts: dict = {"streams": [s.type for s in container.streams], "metadata": dict(container.metadata)}
        video = container.streams.video[0]
        facts["video_duration"] = float(video.duration * video.time_base)
        facts["frames"] = video.frames
        facts["rate"] = video.guessed_rate
        facts["pix_fmt"] = video.codec_context.format.name
        facts["video_metadata"] = dict(video.metadata)
        if container.streams.audio:
            audio = container.streams.audio[0]
            facts["audio_duration"] = float(audio.duration * audio.time_base)
            facts["audio_codec"] = audio.codec_context.name
        facts["subtitles"] = [s.codec_context.name for s in container.streams.subtitles]
    return facts


@pytest.fixture(scope="session")
def cut_clip(tmp_path_factory) -> Path:
    """90 frames at 25 fps, hard cuts at 30 and 60, a 440 Hz tone, two subtitles, timecode 01:00:00:00."""
    from sfi_cli.media.ffmpeg import find_ffmpeg

    folder = tmp_path_factory.mktemp("clips")
    return make_clip(folder / "cuts.mp4", find_ffmpeg(), subtitles=True, timecode="01:00:00:00")


@pytest.fixture(scope="session")
def still_clip(tmp_path_factory) -> Path:
    """A clip with no cut at all."""
    from sfi_cli.media.ffmpeg import find_ffmpeg

    return make_clip(tmp_path_factory.mktemp("clips") / "still.mp4", find_ffmpeg(), frames=50, cuts=())


# Clips for the stream tests (tests/test_streams.py): tiny, with a cut, audio tracks of seeded noise that
# start at given offsets from the video, and optionally ASS subtitles, a font attachment and chapters.
STREAM_SIZE, STREAM_RATE, STREAM_FRAMES, STREAM_CUT, STREAM_SAMPLE_RATE = (64, 36), 25, 50, 25, 48000
FONT_BYTES = b"\x00\x01\x00\x00sfi test font" * 8
ASS_TEXT = """[Script Info]
ScriptType: v4.00+
PlayResX: 64
PlayResY: 36

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,SfiTest,20,&H0000FFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:00.20,0:00:00.60,Default,,0,0,0,,{\\b1}first line
Dialogue: 0,0:00:01.40,0:00:01.80,Default,,0,0,0,,last line
"""


def stream_audio(track: int, seconds: float) -> np.ndarray:
    """A track's sound: seeded noise (cross-correlation finds any stretch of it at one lag only)."""
    rng = np.random.default_rng(500 + track)
    return (rng.standard_normal(round(seconds * STREAM_SAMPLE_RATE)) * 0.2).astype(np.float32)


def make_stream_clip(path: Path, ffmpeg: str, *, audio_offsets: tuple[float, ...] = (0.3,), video_offset: float = 0.0,
                     ass: bool = False, font: bool = False, chapters: bool = False) -> Path:
    """STREAM_FRAMES frames with a hard cut at STREAM_CUT; audio track i starts ``audio_offsets[i]`` seconds
    after the file's start and lasts to the end of the video, the video ``video_offset`` after it.
    Track i's samples are ``stream_audio(i, ...)``."""
    width, height = STREAM_SIZE
    seconds = STREAM_FRAMES / STREAM_RATE
    folder = path.parent
    frames = path.with_name(path.stem + "-frames.rgb")
    textures: dict[int, np.ndarray] = {}
    frames.write_bytes(b"".join(clip_frame(i, int(i >= STREAM_CUT), width, height, textures).tobytes()
                                for i in range(STREAM_FRAMES)))
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-itsoffset", str(video_offset), "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(STREAM_RATE), "-i", str(frames)]
    maps = ["-map", "0:v"]
    inputs = 1
    for track, offset in enumerate(audio_offsets):
        raw = folder / f"{path.stem}-audio{track}.f32"
        raw.write_bytes(stream_audio(track, seconds + video_offset - offset).tobytes())
        command += ["-f", "f32le", "-ar", str(STREAM_SAMPLE_RATE), "-ac", "1", "-i", str(raw)]
        maps += ["-map", f"{inputs}:a", f"-filter:a:{track}", f"asetpts=PTS+{offset}/TB"]  # raw PCM ignores -itsoffset
        inputs += 1
    if ass:
        subtitles = path.with_name(path.stem + ".ass")
        subtitles.write_text(ASS_TEXT)
        command += ["-i", str(subtitles)]
        maps += ["-map", f"{inputs}:s"]
        inputs += 1
    if chapters:
        metadata = path.with_name(path.stem + "-chapters.txt")
        metadata.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=Before the cut\n"
                            "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\ntitle=After the cut\n")
        command += ["-i", str(metadata)]
        maps += ["-map_chapters", str(inputs)]
    if font:
        font_file = path.with_name("SfiTest.ttf")
        font_file.write_bytes(FONT_BYTES)
        command += ["-attach", str(font_file), "-metadata:s:t:0", "mimetype=application/x-truetype-font"]
    command += maps + ["-c:v", "libx264", "-crf", "10", "-preset", "veryfast", "-g", "10", "-pix_fmt", "yuv420p",
                       "-c:a", "aac", "-b:a", "192k"]
    if ass:
        command += ["-c:s", "ass" if path.suffix == ".mkv" else "mov_text"]
    subprocess.run([*command, str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def late_audio_clip(tmp_path_factory) -> Path:
    """Two audio tracks starting 0.3 s and 0.12 s after the video (a cut at frame 25 of 50)."""
    from sfi_cli.media.ffmpeg import find_ffmpeg

    return make_stream_clip(tmp_path_factory.mktemp("clips") / "late.mp4", find_ffmpeg(), audio_offsets=(0.3, 0.12))


@pytest.fixture(scope="session")
def early_audio_clip(tmp_path_factory) -> Path:
    """An audio track starting 0.2 s before the video."""
    from sfi_cli.media.ffmpeg import find_ffmpeg

    return make_stream_clip(tmp_path_factory.mktemp("clips") / "early.mp4", find_ffmpeg(), audio_offsets=(0.0,),
                            video_offset=0.2)


@pytest.fixture(scope="session")
def matroska_clip(tmp_path_factory) -> Path:
    """A .mkv with ASS subtitles, a font attachment and two chapters (split at the cut)."""
    from sfi_cli.media.ffmpeg import find_ffmpeg

    return make_stream_clip(tmp_path_factory.mktemp("clips") / "styled.mkv", find_ffmpeg(), audio_offsets=(0.0,),
                            ass=True, font=True, chapters=True)


# --- Pictures: clips whose exact code values, pixel shape, fields and HDR metadata are known ---

def encode_yuv(path: Path, ffmpeg: str, frames: list[list[np.ndarray]], *, pix_fmt: str, rate: str = "25",
               codec: tuple[str, ...] = ("-c:v", "libx264", "-qp", "0", "-preset", "veryfast"),
               tags: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> Path:
    """Encode frames given as YUV planes (Y, U, V arrays of ``pix_fmt``'s layout and depth) without
    loss, so the file decodes to exactly these code values. ``tags`` (colour options such as
    -colorspace) describe the frames given (so ffmpeg converts nothing) and the file; ``extra`` are
    further output options."""
    height, width = frames[0][0].shape
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix_fmt,
               "-s", f"{width}x{height}", "-framerate", rate, *tags, "-i", "pipe:0", *codec, "-pix_fmt", pix_fmt,
               *tags, *extra, str(path)]
    data = b"".join(np.ascontiguousarray(plane).tobytes() for planes in frames for plane in planes)
    subprocess.run(command, input=data, check=True)
    return path


def yuv_planes(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every frame of the first video stream as its (Y, U, V) planes in code values, as decoded (no conversion)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            deep = any(c.bits > 8 for c in frame.format.components)
            dtype = np.dtype(np.uint16 if deep else np.uint8)
            planes = []
            for plane in frame.planes[:3]:
                data = np.frombuffer(bytes(plane), dtype)
                planes.append(data.reshape(plane.height, plane.line_size // dtype.itemsize)[:, :plane.width].copy())
            frames.append(tuple(planes))
    return frames


def flat_planes(width: int, height: int, yuv: tuple[int, int, int], pix_fmt: str) -> list[np.ndarray]:
    """One flat frame's planes in ``pix_fmt`` (4:2:0 or 4:4:4, 8 or 10 bits)."""
    dtype = np.uint16 if "10" in pix_fmt else np.uint8
    chroma = (height, width) if pix_fmt.startswith("yuv444") else ((height + 1) // 2, (width + 1) // 2)
    return [np.full((height, width), yuv[0], dtype), np.full(chroma, yuv[1], dtype), np.full(chroma, yuv[2], dtype)]


def video_facts(path: Path) -> dict:
    """The picture facts of the first video stream (PyAV): size, pixel aspect, colour tags, pixel format."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        return {"size": (context.width, context.height), "sar": stream.sample_aspect_ratio,
                "colorspace": context.colorspace, "primaries": context.color_primaries, "trc": context.color_trc,
                "range": context.color_range, "pix_fmt": context.format.name}


def make_pan_clip(path: Path, ffmpeg: str, *, frames: int = 13, size: tuple[int, int] = (128, 80)) -> Path:
    """A camera panning over ffmpeg's test pattern (lavfi testsrc), 3 px right and 2 px down a frame:
    motion an interpolator can follow, with every real frame between to compare with."""
    width, height = size
    pan = f"testsrc=s={width * 3}x{height * 3}:r=25,crop={width}:{height}:'20+n*3':'20+n*2'"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", pan,
                    "-frames:v", str(frames), "-c:v", "libx264", "-crf", "6", "-preset", "veryfast",
                    "-pix_fmt", "yuv444p", str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def pan_clip(tmp_path_factory) -> Path:
    """13 frames of a panning test pattern, 128x80 (``make_pan_clip``)."""
    from sfi_cli.media.ffmpeg import find_ffmpeg

    return make_pan_clip(tmp_path_factory.mktemp("clips") / "pan.mp4", find_ffmpeg())
