"""The sound under the timeline: per output audio track, sample-exact pieces of the sources (or silence)
of exactly the picture's length, some crossfaded into the one before.

Each video shot plays its own sound over its whole range (replace transitions lie over sound that
keeps playing); stills and slow motion are silent. Under an inserted transition the outgoing shot's
sound runs on for the first half and the incoming shot's leads in for the second half, joined by a
short crossfade (``audio = "silence"``: silence there instead). Source samples are placed by each
audio stream's own start, so a track that starts later (or earlier) than the video keeps that
relation; sound from before a track's first sample is silence.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Mapping

from sfi_cli.timeline.model import AudioPiece, AudioTrack, Shot, Source

CROSSFADE_SECONDS = 0.2  # the crossfade between the two sides' sound in the middle of an inserted transition

# Audio codecs each container takes as they are.
COPYABLE_AUDIO = {".mp4": {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"},
                  ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be",
                           "pcm_f32le"},
                  ".mkv": {"aac", "mp3", "mp2", "ac3", "eac3", "dts", "truehd", "opus", "vorbis", "flac", "alac",
                           "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_s16be"}}
# The codec of an audio track that is rebuilt from pieces: AAC where the container is for delivery, PCM in .mov.
REBUILT_AUDIO = {".mp4": "aac", ".mov": "pcm_s24le", ".mkv": "aac"}


def audio_tracks(sources: Mapping[str, Source], shots: list[Shot], rate: Fraction, suffix: str) -> tuple[AudioTrack, ...]:
    """One output track per audio track of the videos (as many as the video with the most has), each in
    the format of the first video that has it; a track is copied untouched when the timeline plays one
    source's sound start to end in a codec the container takes."""
    videos = [s for s in sources.values() if s.info]
    tracks = []
    for track in range(max((len(s.info.audio) for s in videos), default=0)):
        model = next(s.info.audio[track] for s in videos if len(s.info.audio) > track)
        pieces = track_pieces(shots, track, model.sample_rate, rate)
        codec = _audio_codec(suffix, sources, pieces)
        whole = (len(pieces) > 0 and all(p.source == pieces[0].source and not p.overlap for p in pieces)
                 and pieces[0].source is not None and _contiguous(sources[pieces[0].source], shots, rate))
        copy_from = (pieces[0].source, track) if whole and codec == "copy" else None
        if codec == "copy" and copy_from is None:
            codec = REBUILT_AUDIO[suffix]
        tracks.append(AudioTrack(model.sample_rate, model.layout, codec, model.language, pieces, copy_from))
    return tuple(tracks)


def track_pieces(shots: list[Shot], track: int, sample_rate: int, rate: Fraction) -> tuple[AudioPiece, ...]:
    """The pieces of audio track ``track`` at ``sample_rate`` under ``shots`` played at ``rate`` fps."""
    pieces: list[AudioPiece] = []
    done = 0  # output frames laid out so far
    lead_in: tuple[int, int] | None = None  # (samples to start early, crossfade) after a crossfaded transition
    for shot in shots:
        frames = shot.frames + (shot.frames - 1) * (shot.spec.slowmo - 1)
        piece = _shot_piece(shot, track, sample_rate, rate, samples_between(done, done + frames, sample_rate, rate))
        if lead_in:
            early, overlap = lead_in
            piece = replace(piece, start_sample=piece.start_sample - early, samples=piece.samples + early, overlap=overlap)
            lead_in = None
        pieces.append(piece)
        done += frames
        if shot.inserts:
            gap = samples_between(done, done + shot.transition_frames, sample_rate, rate)
            if shot.spec.transition.audio == "silence":
                pieces.append(AudioPiece(None, track, 0, gap))
            else:
                pieces[-1], lead_in = crossfade_split(pieces[-1], gap, round(CROSSFADE_SECONDS * sample_rate))
            done += shot.transition_frames
    return tuple(piece if piece.source is None or piece.start_sample + piece.samples > 0
                 else replace(piece, source=None, start_sample=0) for piece in pieces)


def _shot_piece(shot: Shot, track: int, sample_rate: int, rate: Fraction, samples: int) -> AudioPiece:
    """A shot's own sound from its first frame, or silence (a still, slow motion, a video without the track)."""
    info = shot.source.info
    if info is not None and len(info.audio) > track and shot.spec.slowmo == 1:
        return AudioPiece(shot.source.key, track, sample_at(shot.start, sample_rate, rate, -info.audio[track].start_offset),
                          samples)
    return AudioPiece(None, track, 0, samples)


def crossfade_split(outgoing: AudioPiece, gap: int, crossfade: int) -> tuple[AudioPiece, tuple[int, int]]:
    """Fill ``gap`` samples under an inserted transition: the outgoing piece runs on for half of it (and half
    the crossfade); returns it and (samples the incoming piece starts early, crossfade into it)."""
    overlap = min(gap, crossfade)
    run_on = gap // 2 + overlap // 2
    return replace(outgoing, samples=outgoing.samples + run_on), (gap + overlap - run_on, overlap)


def sample_at(frame: int, sample_rate: int, rate: Fraction, offset: Fraction = Fraction(0)) -> int:
    """The sample at which output ``frame`` starts, ``offset`` seconds later."""
    return round((offset + Fraction(frame) / rate) * sample_rate)


def samples_between(start: int, stop: int, sample_rate: int, rate: Fraction) -> int:
    """Samples from the start of frame ``start`` to the start of frame ``stop`` (rounded at both ends, so
    pieces laid end to end never drift from the picture)."""
    return sample_at(stop, sample_rate, rate) - sample_at(start, sample_rate, rate)


def _audio_codec(suffix: str, sources: Mapping[str, Source], pieces: tuple[AudioPiece, ...]) -> str:
    used = {sources[p.source].info.audio[p.track].codec for p in pieces if p.source}
    if len(used) == 1 and used <= COPYABLE_AUDIO[suffix]:
        return "copy"
    return REBUILT_AUDIO[suffix]


def _contiguous(source: Source, shots: list[Shot], rate: Fraction) -> bool:
    """True when ``shots`` play ``source`` from its start to its end without a break or a rate change."""
    if source.info.rate != rate or source.info.vfr:
        return False
    return (shots[0].start == 0 and shots[-1].stop == source.info.frame_count
            and all(a.stop == b.start for a, b in zip(shots, shots[1:])))
