"""Moved to :mod:`weakseg.tiff_reader` (the slide layer reads stored TIFF tiles; tiling and maps use it)."""

from ..tiff_reader import *  # noqa: F401,F403
from ..tiff_reader import __all__  # noqa: F401
