"""Nuclear instance segmentation of whole slides, streamed block by block with bounded memory.

The slide is read at the learner's µm/px (:attr:`HoverNetLearner.model_mpp`) in ``block``-px
blocks, each with a ``halo`` of context on every side. A block's instances come from the
learner (:meth:`~weakseg.learners.nuclei.HoverNetLearner.predict_maps` + HoVer-Net
post-processing) on block + halo; an instance is kept by the one block whose core holds its
centroid, so a nucleus on a block border is found whole (the halo is wider than a nucleus) and
written once, never cut nor duplicated. Only the kept instances are held (bounding box + packed
bit mask, a few bytes each), never a slide-sized array.

Outputs in ``out_dir`` for slide ``<id>``:

* ``<id>.nuclei.csv``: ``id, centroid_x, centroid_y`` (level-0 px), ``area_um2``, ``type``, ``probability``
  (mean nuclear probability over the nucleus);
* ``<id>.nuclei.geojson``: QuPath detections (``objectType: detection``, class ``Nucleus``), level-0 coordinates;
* ``<id>.instances.tif``: uint32 instance labels (ids as in the CSV) at the model's µm/px, tiled, with
  the resolution in its tags and ``{mpp, downsample, level}`` in its ImageDescription.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from ..atomic import atomic_path, atomic_write_text
from ..errors import SlideError, WeaksegError

TILE = 256
NUCLEUS_CLASS = {"name": "Nucleus", "color": [0, 0, 255]}


@dataclass
class _Nucleus:
    """One kept instance in model pixels: top-left ``(y0, x0)``, box ``(h, w)``, packed mask bits."""

    y0: int
    x0: int
    h: int
    w: int
    bits: np.ndarray
    area: int
    cy: float
    cx: float
    prob: float

    def mask(self) -> np.ndarray:
        return np.unpackbits(self.bits, count=self.h * self.w).reshape(self.h, self.w).astype(bool)


def _is_background(rgb: np.ndarray) -> bool:
    """A block with (almost) no stained pixel: skipped without running the model."""
    return bool((rgb.min(axis=2) > 215).mean() > 0.98)


def _block_nuclei(labels: np.ndarray, prob: np.ndarray, x0: int, y0: int, core: tuple[int, int, int, int]) -> list[_Nucleus]:
    bx0, by0, bx1, by1 = core
    out = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        m = labels[box] == k
        ys, xs = np.nonzero(m)
        cy, cx = y0 + box[0].start + ys.mean(), x0 + box[1].start + xs.mean()
        if not (by0 <= cy < by1 and bx0 <= cx < bx1):
            continue  # another block's core holds its centroid: that block keeps it
        out.append(_Nucleus(y0 + box[0].start, x0 + box[1].start, m.shape[0], m.shape[1], np.packbits(m.ravel()),
                            int(m.sum()), float(cy), float(cx), float(prob[box][m].mean())))
    return out


def predict_slide_nuclei(learner: Any, slide_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                         block: int = 1024, halo: int = 48, mpp_override: float | None = None) -> dict[str, Any]:
    """Segment every nucleus of ``slide_path`` with a fitted HoVer-Net learner; write the outputs (module doc).

    ``halo`` (model px) must exceed the largest nucleus diameter; ``block`` bounds memory. Returns a
    summary row (``slide_id, n_nuclei, width, height, mpp, seconds``).
    """
    import time

    from ..resolution import RegionReader, Resolution
    from ..slide import open_slide

    if block < 64 or halo < 8:
        raise WeaksegError(f"block must be >= 64 and halo >= 8 model pixels, got {block} and {halo}")
    t0 = time.perf_counter()
    slide_path, out_dir = Path(slide_path), Path(out_dir)
    slide_id = slide_path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    with open_slide(slide_path, mpp_override=mpp_override) as slide:
        if not slide.has_mpp:
            raise SlideError(f"{slide_path}: no pixel size in the file; give --mpp-override (µm per level-0 pixel)")
        res = Resolution.plan(slide, mpp=learner.model_mpp)
        width, height = res.dimensions(slide)
        nuclei: list[_Nucleus] = []
        with RegionReader(slide, res) as reader:
            for by in range(0, height, block):
                for bx in range(0, width, block):
                    x0, y0 = max(bx - halo, 0), max(by - halo, 0)
                    x1, y1 = min(bx + block + halo, width), min(by + block + halo, height)
                    rgb = reader.read(x0, y0, x1 - x0, y1 - y0)
                    if _is_background(rgb):
                        continue
                    prob, hv = learner.predict_maps(rgb)
                    labels = learner._post(prob, hv)
                    core = (bx, by, min(bx + block, width), min(by + block, height))
                    nuclei += _block_nuclei(labels, prob, x0, y0, core)
    nuclei.sort(key=lambda n: (n.y0, n.x0))
    d, mpp = float(res.downsample), float(learner.model_mpp)
    table = pd.DataFrame({
        "id": np.arange(1, len(nuclei) + 1),
        "centroid_x": [(n.cx + 0.5) * d for n in nuclei], "centroid_y": [(n.cy + 0.5) * d for n in nuclei],
        "area_um2": [n.area * mpp * mpp for n in nuclei], "type": "nucleus", "probability": [n.prob for n in nuclei],
    })
    atomic_write_text(out_dir / f"{slide_id}.nuclei.csv", table.to_csv(index=False, float_format="%.4g"))
    _write_geojson(out_dir / f"{slide_id}.nuclei.geojson", nuclei, d)
    _write_labels(out_dir / f"{slide_id}.instances.tif", nuclei, (height, width), mpp,
                  {"mpp": mpp, "downsample": d, "level": res.level, "slide": slide_path.name})
    return {"slide_id": slide_id, "n_nuclei": len(nuclei), "width": width, "height": height, "mpp": mpp,
            "seconds": round(time.perf_counter() - t0, 3)}


def _write_geojson(path: Path, nuclei: list[_Nucleus], downsample: float) -> None:
    from ..maps.geojson import mask_to_features, write_geojson

    features = []
    for i, n in enumerate(nuclei, start=1):
        shift = np.array([n.x0 * downsample, n.y0 * downsample])
        # a nucleus is one connected region; a stray second piece is not a second detection
        for f in mask_to_features(n.mask(), downsample, classification=NUCLEUS_CLASS)[:1]:
            f["geometry"]["coordinates"] = [(np.asarray(r) + shift).round(2).tolist() for r in f["geometry"]["coordinates"]]
            f["properties"].update(objectType="detection", measurements={"instance_id": i, "probability": round(n.prob, 4)})
            features.append(f)
    write_geojson(path, features)


def _write_labels(path: Path, nuclei: list[_Nucleus], shape: tuple[int, int], mpp: float, meta: dict[str, Any]) -> None:
    """uint32 labels, tiled, painted one row of tiles at a time from the kept nuclei."""
    import tifffile

    height, width = shape
    starts = np.array([n.y0 for n in nuclei])
    ends = np.array([n.y0 + n.h for n in nuclei])

    def tiles():
        for ty in range(0, height, TILE):
            band = np.zeros((TILE, -(-width // TILE) * TILE), dtype=np.uint32)
            for i in np.flatnonzero((starts < ty + TILE) & (ends > ty)):
                n = nuclei[i]
                m = n.mask()
                r0, r1 = max(n.y0, ty), min(n.y0 + n.h, ty + TILE)
                part = m[r0 - n.y0:r1 - n.y0]
                view = band[r0 - ty:r1 - ty, n.x0:n.x0 + n.w]
                view[part] = i + 1
            for tx in range(0, band.shape[1], TILE):
                yield band[:, tx:tx + TILE]

    with atomic_path(path, suffix=".tif") as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=height * width * 4 > 2**31) as tif:
            tif.write(tiles(), shape=(height, width), dtype=np.uint32, tile=(TILE, TILE), compression="zlib",
                      photometric="minisblack", resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER",
                      description=json.dumps(meta), metadata=None)


__all__ = ["predict_slide_nuclei"]
