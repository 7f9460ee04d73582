"""Synthetic PANDA-style cohorts: needle-biopsy slides, label masks and ``train.csv``.

>>> from weakseg.synth import make_cohort
>>> table = make_cohort("/tmp/panda-synth", n_slides=8, seed=0)  # doctest: +SKIP
"""

from .cohort import DEFAULT_SIZE, SlidePlan, SynthConfigError, make_cohort, plan_cohort, write_slide
from .layout import GLEASON_PAIRS, make_scene
from .render import render, render_labels
from .scene import DOWNSAMPLES, GENERATOR_VERSION, SlideScene

__all__ = [
    "DEFAULT_SIZE",
    "DOWNSAMPLES",
    "GENERATOR_VERSION",
    "GLEASON_PAIRS",
    "SlidePlan",
    "SlideScene",
    "SynthConfigError",
    "make_cohort",
    "make_scene",
    "plan_cohort",
    "render",
    "render_labels",
    "write_slide",
]
