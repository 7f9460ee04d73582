"""Slide maps: streaming sliding-window inference -> pyramidal TIFF, GeoJSON, PNG overlay."""

from .geojson import mask_to_features, write_geojson
from .overlay import blend_overlay, write_png
from .predict import PredictTiles, SlideMap, predict_slide_map
from .pyramid import write_pyramid
from .stitch import StitchGrid, blend_window, stream_stitch, window_starts

__all__ = [
    "PredictTiles",
    "SlideMap",
    "StitchGrid",
    "blend_overlay",
    "blend_window",
    "mask_to_features",
    "predict_slide_map",
    "stream_stitch",
    "window_starts",
    "write_geojson",
    "write_png",
    "write_pyramid",
]
