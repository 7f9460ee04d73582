"""Moved to :mod:`weakseg.tissue` (the slide layer, shared by tiling, maps and refinement)."""

from ..tissue import detect_tissue, ink_mask

__all__ = ["detect_tissue", "ink_mask"]
