"""Readers of a plan's sources, in the output's size, rate, pixel format and colours: the one way both
passes read footage (pass 1 its boundary frames, pass 2 everything it relays)."""

from __future__ import annotations

from sfi_cli.media import formats
from sfi_cli.timeline.model import Plan


def plan_reader(plan: Plan, key: str, ffmpeg: str):
    """A reader of one source in the output's pixel format and colours."""
    from sfi_cli.media.readers import StillReader, VideoReader

    source = plan.sources[key]
    if source.info is None:
        return StillReader(source.path, size=plan.size, fit=plan.fit, pix_fmt=plan.pix_fmt, ffmpeg=ffmpeg,
                           rgb_pix_fmt=plan.rgb_pix_fmt, to_output=plan.rgb_to_output(ffmpeg), sar=plan.sar, pad=plan.pad)
    color_filter = None
    if (source.info.matrix, source.info.color_range) != (plan.matrix, plan.color_range):
        color_filter = formats.yuv_to_yuv((source.info.matrix, source.info.color_range),
                                          (plan.matrix, plan.color_range), ffmpeg)
    return VideoReader(source.info, size=plan.size, fit=plan.fit, rate=plan.rate, pix_fmt=plan.pix_fmt,
                       keep_rotation=plan.keep_rotation, ffmpeg=ffmpeg, color_filter=color_filter, sar=plan.sar,
                       pad=plan.pad, native=plan.native_frames)


class Readers(dict):
    """One reader per source, opened on first use and all closed together."""

    def __init__(self, plan: Plan, ffmpeg: str) -> None:
        super().__init__()
        self.plan, self.ffmpeg = plan, ffmpeg

    def __missing__(self, key: str):
        self[key] = reader = plan_reader(self.plan, key, self.ffmpeg)
        return reader

    def close(self) -> None:
        for reader in self.values():
            reader.close()
