"""The timeline's pure parts, without decoding: layout into segments and gaps, audio piece arithmetic,
subtitle and chapter retiming, and the recipe written for the editor read back as it was built."""

from __future__ import annotations

import dataclasses
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image

from sfi_cli.errors import SfiError
from sfi_cli.media.probe import Attachment, AudioStream, Chapter, ColorTags, MediaInfo, SubtitleStream
from sfi_cli.timeline.audio import CROSSFADE_SECONDS, crossfade_split, samples_between, track_pieces
from sfi_cli.timeline.cuts import Cut
from sfi_cli.timeline.fill import cut_notes, cut_recipe
from sfi_cli.timeline.layout import EngineNames, lay_out, make_plan, resolve_shot, take_replace_overlaps
from sfi_cli.timeline.model import Footage, Generated, Source, Still
from sfi_cli.timeline.recipe import ShotSpec, TransitionSpec, load_recipe, located, parse_recipe, recipe_text
from sfi_cli.timeline.subtitles import following_streams, inserted_shifts, retimed
from sfi_cli.timeline.timecode import Position, parse_position

RATE = Fraction(24)
SAMPLE_RATE = 48000


def video(name: str = "clip.mp4", frames: int = 48, audio_offset: Fraction = Fraction(0), **extra) -> Source:
    """A video source as probe would describe it (no file: layout needs only the facts)."""
    info = MediaInfo(path=Path(name), width=64, height=36, rate=RATE, frame_count=frames, codec="h264",
                     pix_fmt="yuv420p", bit_depth=8, chroma="420", color=ColorTags(), rotation=0, timecode=None,
                     start_offset=Fraction(0), vfr=False,
                     audio=(AudioStream(0, "aac", SAMPLE_RATE, 2, "stereo", start_offset=audio_offset),), **extra)
    return Source(name, "video", Path(name), info)


def transition(frames: int, mode: str = "insert", audio: str = "crossfade") -> TransitionSpec:
    return TransitionSpec(Position(str(frames), frames=frames), "", "", "crossfade", 0, mode, where="t", audio=audio)


def shot(source: Source, start: int, stop: int, following: TransitionSpec | None = None, slowmo: int = 1):
    spec = ShotSpec(source.kind, source.path, parse_position(start), parse_position(stop), None, slowmo, following,
                    where="s")
    return resolve_shot(spec, source, RATE)


def laid_out(shots):
    return lay_out(take_replace_overlaps(shots), RATE, EngineNames("crossfade", {}))


def test_insert_adds_a_gap_between_two_shots():
    clip = video()
    segments, gaps = laid_out([shot(clip, 0, 20, transition(6)), shot(clip, 20, 48)])
    assert segments == (Footage(clip.key, 0, 20), Generated(0, 6), Footage(clip.key, 20, 48))
    assert (gaps[0].before, gaps[0].after, gaps[0].output_start, gaps[0].mode) == ((clip.key, 19), (clip.key, 20), 20, "insert")
    assert gaps[0].label == "shot 1 -> 2 at 00:00:00:20"


def test_replace_takes_half_from_each_side_and_keeps_the_length():
    clip = video()
    segments, gaps = laid_out([shot(clip, 0, 20, transition(7, "replace")), shot(clip, 20, 48)])
    assert segments == (Footage(clip.key, 0, 17), Generated(0, 7), Footage(clip.key, 24, 48))
    assert sum(s.frames for s in segments) == 48
    assert (gaps[0].before, gaps[0].after) == ((clip.key, 16), (clip.key, 24))


def test_replace_longer_than_a_shot_is_refused():
    clip = video()
    with pytest.raises(SfiError, match="transition longer than the shot"):
        take_replace_overlaps([shot(clip, 0, 3, transition(8, "replace")), shot(clip, 3, 48)])


def test_slow_motion_puts_a_gap_between_every_pair_of_frames():
    clip = video()
    segments, gaps = laid_out([shot(clip, 10, 13, slowmo=3)])
    assert segments == (Footage(clip.key, 10, 11), Generated(0, 2), Footage(clip.key, 11, 12), Generated(1, 2),
                        Footage(clip.key, 12, 13))
    assert [(g.before, g.after, g.mode) for g in gaps] == [((clip.key, 10), (clip.key, 11), "slowmo"),
                                                          ((clip.key, 11), (clip.key, 12), "slowmo")]


def test_a_shot_past_its_clip_is_refused():
    with pytest.raises(SfiError, match="past the end"):
        shot(video(frames=48), 0, 49)


def test_inserted_crossfade_audio_covers_the_picture_sample_for_sample():
    clip = video()
    shots = take_replace_overlaps([shot(clip, 0, 20, transition(12)), shot(clip, 20, 48)])
    pieces = track_pieces(shots, 0, SAMPLE_RATE, RATE)
    overlap = round(CROSSFADE_SECONDS * SAMPLE_RATE)
    assert [p.source for p in pieces] == [clip.key, clip.key]
    assert pieces[1].overlap == overlap
    assert sum(p.samples for p in pieces) - overlap == samples_between(0, 60, SAMPLE_RATE, RATE)
    # the outgoing side runs on for half the gap, the incoming side starts early by the other half
    assert pieces[0].samples == 20 * 2000 + 12000 + overlap // 2
    assert pieces[1].start_sample == 20 * 2000 - (12 * 2000 + overlap - 12000 - overlap // 2)


def test_inserted_silence_is_a_silent_piece_of_the_gap_length():
    clip = video()
    shots = take_replace_overlaps([shot(clip, 0, 20, transition(12, audio="silence")), shot(clip, 20, 48)])
    pieces = track_pieces(shots, 0, SAMPLE_RATE, RATE)
    assert [(p.source, p.samples) for p in pieces] == [(clip.key, 40000), (None, 24000), (clip.key, 56000)]
    assert pieces[2].start_sample == 40000


def test_a_late_audio_track_keeps_its_offset_and_starts_with_silence():
    clip = video(audio_offset=Fraction(1, 2))
    pieces = track_pieces([shot(clip, 0, 48)], 0, SAMPLE_RATE, RATE)
    assert (pieces[0].start_sample, pieces[0].samples) == (-24000, 96000)
    early = track_pieces([shot(clip, 0, 6)], 0, SAMPLE_RATE, RATE)  # ends before the track's first sample
    assert early[0].source is None


def test_crossfade_split_shares_the_gap():
    (piece,) = track_pieces([shot(video(), 0, 24)], 0, SAMPLE_RATE, RATE)
    outgoing, (early, overlap) = crossfade_split(piece, gap=1001, crossfade=100)
    assert outgoing.samples - 48000 + early - overlap == 1001
    assert overlap == 100


def test_samples_between_never_drifts():
    rate = Fraction(30000, 1001)
    steps = [samples_between(n, n + 1, 44100, rate) for n in range(1000)]
    assert sum(steps) == samples_between(0, 1000, 44100, rate)
    assert set(steps) <= {1471, 1472}


def test_subtitles_and_chapters_move_past_inserted_transitions():
    chapters = (Chapter(Fraction(0), Fraction(1)), Chapter(Fraction(1), Fraction(2), "two"))
    clip = video(subtitles=(SubtitleStream(0, "subrip"),), chapters=chapters,
                 attachments=(Attachment(0, "font.ttf"),))
    shots = take_replace_overlaps([shot(clip, 0, 24, transition(12)), shot(clip, 24, 48)])
    assert inserted_shifts(shots, RATE) == ((Fraction(1), Fraction(1, 2)),)
    streams = following_streams(clip, shots, RATE, ".mp4", one_source=True)
    # a chapter starting at the cut starts after its transition; one ending there ends after it too
    assert streams.chapters == (Chapter(Fraction(0), Fraction(3, 2)), Chapter(Fraction(3, 2), Fraction(5, 2), "two"))
    assert streams.subtitles == clip.info.subtitles and streams.shifts == ((Fraction(1), Fraction(1, 2)),)
    assert streams.attachments == () and "attachment" in streams.warnings[0]
    assert following_streams(clip, shots, RATE, ".mkv", one_source=True).attachments == clip.info.attachments
    assert retimed(chapters[0], ()) == chapters[0]


def test_subtitles_are_left_out_when_the_timeline_rearranges_the_video():
    clip = video(subtitles=(SubtitleStream(0, "subrip"),))
    shots = take_replace_overlaps([shot(clip, 24, 48, transition(4)), shot(clip, 0, 24)])
    streams = following_streams(clip, shots, RATE, ".mp4", one_source=True)
    assert streams.subtitles == () and "left out" in streams.warnings[0]


@pytest.mark.parametrize("relative", [True, False])
def test_written_recipe_reads_back_equal(tmp_path, relative):
    (tmp_path / "clip.mp4").write_bytes(b"")  # parsing checks only that media files exist
    recipe_file = tmp_path / "cuts.recipe.toml"
    cuts = [Cut(30, 1.25, "00:00:01:06", 12.5), Cut(60, 2.5, "00:00:02:12", None)]
    built = cut_recipe(recipe_file, tmp_path / "clip.mp4", cuts, 90, frames=24, mode="replace",
                       output=tmp_path / "out.mkv", prompt='a "quoted" prompt', negative_prompt="blur", seed=7,
                       engine="flow", audio="silence")
    text = recipe_text(built, header="made by a test", notes=cut_notes(cuts), relative=relative)
    read = parse_recipe(tomllib.loads(text), text, recipe_file)
    assert read == built
    assert [s.where for s in located(built, text).shots] == [s.where for s in read.shots]
    assert located(built, text).shots[0].transition.where == read.shots[0].transition.where
    assert "# cut 1 at frame 30 (00:00:01:06), score 12.5" in text
    assert ("video = \"clip.mp4\"" in text) == relative


def test_plan_of_stills_is_immutable(tmp_path):
    for name, colour in (("a.png", (255, 0, 0)), ("b.png", (0, 0, 255))):
        Image.new("RGB", (64, 36), colour).save(tmp_path / name)
    (tmp_path / "r.toml").write_text('[output]\npath = "out.mp4"\nfps = 24\n\n[[shot]]\nimage = "a.png"\nduration = 10\n'
                                     '[shot.transition]\nframes = 5\nengine = "crossfade"\n\n'
                                     '[[shot]]\nimage = "b.png"\nduration = 10\n')
    plan = make_plan(load_recipe(tmp_path / "r.toml"), engine="auto", engine_settings={}, default_fps=Fraction(24),
                     crf=18, preset="medium")
    assert plan.segments == (Still(str(tmp_path / "a.png"), 10), Generated(0, 5), Still(str(tmp_path / "b.png"), 10))
    assert (plan.total_frames, plan.size, plan.pix_fmt, plan.audio) == (25, (64, 36), "yuv420p", ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.segments = ()


def test_a_turned_anamorphic_first_video_gives_its_shown_pixel_aspect_and_every_other_shape_is_warned(tmp_path):
    """4:3 pixels turned a quarter show as 3:4: a clip stored with the same 4:3 pixels (not turned) and a
    square-pixel image are other shapes, rescaled into 3:4 and warned about, naming the output's 3:4."""
    from sfi_cli.media.readers import VideoReader

    Image.new("RGB", (36, 64)).save(tmp_path / "still.png")
    infos = {}
    for name, rotation in (("turned.mp4", 90), ("level.mp4", 0)):
        (tmp_path / name).write_bytes(b"")  # never probed: the facts below stand for the file
        infos[name] = dataclasses.replace(video(str(tmp_path / name)).info, rotation=rotation, sar=Fraction(4, 3))
    (tmp_path / "r.toml").write_text('[output]\npath = "out.mp4"\nfps = 24\n\n[[shot]]\nvideo = "turned.mp4"\nout = 10\n\n'
                                     '[[shot]]\nvideo = "level.mp4"\nout = 10\n\n[[shot]]\nimage = "still.png"\nduration = 5\n')
    plan = make_plan(load_recipe(tmp_path / "r.toml"), engine="auto", engine_settings={}, default_fps=Fraction(24),
                     crf=18, preset="medium", probed={info.path.resolve(): info for info in infos.values()})
    assert plan.sar == Fraction(3, 4) and plan.size == (36, 64)
    shapes = [w for w in plan.warnings if "pixel aspect" in w]
    assert sorted(shapes) == ["'level.mp4' has pixel aspect 4:3, the output 3:4 (from 'turned.mp4'): it is fitted by "
                              "its display aspect", "'still.png' has pixel aspect 1:1, the output 3:4 (from "
                              "'turned.mp4'): it is fitted by its display aspect"], plan.warnings
    rescaled = {name: any("setsar=1" in f for f in VideoReader(
        info, size=plan.size, fit=plan.fit, rate=plan.rate, pix_fmt=plan.pix_fmt, keep_rotation=plan.keep_rotation,
        ffmpeg="ffmpeg", sar=plan.sar).picture_filters) for name, info in infos.items()}
    assert rescaled == {"turned.mp4": False, "level.mp4": True}  # the reader rescales exactly what is warned about



@pytest.mark.parametrize("space, matrix", [("bt709", "bt709"), ("bt2020nc", "bt2020nc"), (None, "smpte170m"),
                                           ("gbr", "smpte170m")])
def test_a_videos_matrix_is_its_tag_where_the_scalers_know_it_else_bt601(space, matrix):
    assert dataclasses.replace(video().info, color=ColorTags(space=space)).matrix == matrix
