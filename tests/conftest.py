"""The suite's shared fixtures, registered once: ``helpers`` (the CLI runner, images, frame counts) and
``clips`` (session-wide clips made with ffmpeg: cuts, tones and numbered frames). Their plain functions
are imported from those modules, never from here."""

pytest_plugins = ["helpers", "clips"]
