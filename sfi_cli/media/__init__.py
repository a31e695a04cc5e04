"""Media I/O: ffmpeg discovery and processes, probing, pixel formats and codecs, readers, images, safe
publication of files, and the outputs ``sfi interpolate`` writes."""
