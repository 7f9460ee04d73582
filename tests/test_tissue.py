"""detect_tissue lives in the slide layer (weakseg.tissue); weakseg.tiling.tissue re-exports it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def test_old_location_reexports_the_slide_layer_function():
    import weakseg.tiling.tissue as old
    from weakseg import tiling, tissue

    assert old.detect_tissue is tissue.detect_tissue is tiling.detect_tissue
    assert not hasattr(tissue, "saturation_threshold")  # dead code, removed


def test_slide_layer_does_not_import_the_tiling_stage():
    code = "import sys, weakseg.tissue, weakseg.refine.policy; print(sorted(m for m in sys.modules if m.startswith('weakseg.tiling')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_detect_tissue_on_a_tile():
    from weakseg.tissue import detect_tissue

    rgb = np.full((32, 32, 3), 245, np.uint8)
    rgb[8:24, 8:24] = (200, 120, 170)
    mask = detect_tissue(rgb)
    assert mask.shape == (32, 32) and mask[10:22, 10:22].all() and not mask[:6].any()
