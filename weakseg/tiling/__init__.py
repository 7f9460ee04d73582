"""Tiling: slides → HDF5 tile bags (tissue detection, grid selection, fast reads, cohort driver)."""

from .grid import TileGrid
from .report import SlideResult
from .tiler import CohortReport, TileConfig, tile_cohort, tile_slide
from ..tissue import detect_tissue

__all__ = ["CohortReport", "SlideResult", "TileConfig", "TileGrid", "detect_tissue", "tile_cohort", "tile_slide"]
