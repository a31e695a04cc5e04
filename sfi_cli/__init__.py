"""sfi: fill the gap between two frames with generated in-between video."""

__version__ = "0.1.0"
