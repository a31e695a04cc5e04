"""The timeline: recipes and positions, cuts found in a video, and the immutable plan laid out from them
(model, layout, audio, subtitles, describe)."""
