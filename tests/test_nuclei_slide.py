"""Whole-slide nuclei inference (weakseg.nuclei.slide): block seams, outputs, bounded memory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage

from weakseg.nuclei import hv_instances, hv_maps
from weakseg.nuclei.slide import predict_slide_nuclei
from weakseg.synth.tiffwriter import write_pyramid

PURPLE, PINK = (90, 50, 150), (230, 170, 200)


def _slide_with_nuclei(path, side=600, seed=0):
    """A slide of separate discs (radius 5-8 px) at 0.25 µm/px; returns the true instance labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    truth = np.zeros((side, side), np.int32)
    for _ in range(400):
        cy, cx, r = rng.uniform(10, side - 10, 2).tolist() + [rng.uniform(5, 8)]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 2) ** 2
        if not truth[disc].any():
            truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = truth.max() + 1
    rgb = np.empty((side, side, 3), np.uint8)
    rgb[:] = PINK
    rgb[truth > 0] = PURPLE
    padded = np.pad(rgb, ((0, 128), (0, 128), (0, 0)), constant_values=240)  # the painter fills whole tiles
    write_pyramid(path, lambda x, y, w, h, d: padded[y:y + h, x:x + w], (side, side), [1], 0.25, tile=128,
                  compression="zlib")
    return truth


class _ColourNuclei:
    """A stand-in learner with perfect NP/HV maps from the colour: tests the block logic alone."""

    model_mpp = 0.25
    calls = 0

    def predict_maps(self, rgb):
        self.calls += 1
        nuclear = (np.abs(rgb.astype(int) - PURPLE).sum(axis=2) < 30)
        return nuclear.astype(np.float32), hv_maps(ndimage.label(nuclear)[0])

    def _post(self, prob, hv):
        return hv_instances(prob, hv, threshold=0.5, ksize=5, min_size=5, min_marker_size=3)


def test_nuclei_on_block_borders_are_found_once_and_whole(tmp_path):
    truth = _slide_with_nuclei(tmp_path / "s.tif")
    learner = _ColourNuclei()
    summary = predict_slide_nuclei(learner, tmp_path / "s.tif", tmp_path / "out", block=128, halo=24)
    n_true = int(truth.max())
    assert summary["n_nuclei"] == n_true and learner.calls == 25  # 5 x 5 blocks of a 600-px slide
    labels = tifffile.imread(tmp_path / "out" / "s.instances.tif")
    assert labels.shape == truth.shape and labels.dtype == np.uint32
    # every true nucleus is exactly one predicted instance (none cut at a seam, none written twice)
    pairs = set(zip(truth[truth > 0].tolist(), labels[truth > 0].tolist()))
    assert len(pairs) == n_true and len({p for _, p in pairs}) == n_true and 0 not in {p for _, p in pairs}
    crossing = [k for k, box in enumerate(ndimage.find_objects(truth), 1)
                if box[0].start // 128 != (box[0].stop - 1) // 128 or box[1].start // 128 != (box[1].stop - 1) // 128]
    assert len(crossing) > 10  # the slide does exercise the seams
    table = pd.read_csv(tmp_path / "out" / "s.nuclei.csv")
    assert list(table.columns) == ["id", "centroid_x", "centroid_y", "area_um2", "type", "probability"]
    assert len(table) == n_true and table["id"].tolist() == list(range(1, n_true + 1))
    rows = np.clip((table["centroid_y"] - 0.5).round().astype(int), 0, 599)
    cols = np.clip((table["centroid_x"] - 0.5).round().astype(int), 0, 599)
    assert (labels[rows, cols] == table["id"].to_numpy()).all()  # the CSV and the label image agree
    areas = np.bincount(labels.ravel())[1:] * 0.25 ** 2
    np.testing.assert_allclose(table["area_um2"], areas, rtol=1e-3)


def test_geojson_detections_follow_qupaths_schema(tmp_path):
    _slide_with_nuclei(tmp_path / "s.tif", side=300)
    predict_slide_nuclei(_ColourNuclei(), tmp_path / "s.tif", tmp_path / "out", block=128, halo=24)
    data = json.loads((tmp_path / "out" / "s.nuclei.geojson").read_text())
    table = pd.read_csv(tmp_path / "out" / "s.nuclei.csv")
    assert data["type"] == "FeatureCollection" and len(data["features"]) == len(table)
    for f in data["features"]:
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
        props = f["properties"]
        assert props["objectType"] == "detection" and props["classification"]["name"] == "Nucleus"
        for ring in f["geometry"]["coordinates"]:
            assert ring[0] == ring[-1] and len(ring) >= 4
            assert all(len(p) == 2 and 0 <= p[0] <= 300 and 0 <= p[1] <= 300 for p in ring)


def test_blank_blocks_are_skipped(tmp_path):
    side = 256
    write_pyramid(tmp_path / "blank.tif", lambda x, y, w, h, d: np.full((h, w, 3), 240, np.uint8), (side, side), [1],
                  0.25, tile=128, compression="zlib")
    learner = _ColourNuclei()
    summary = predict_slide_nuclei(learner, tmp_path / "blank.tif", tmp_path / "out", block=128, halo=24)
    assert summary["n_nuclei"] == 0 and learner.calls == 0
    assert tifffile.imread(tmp_path / "out" / "blank.instances.tif").max() == 0


def test_weakseg_predict_writes_nuclei_outputs_per_slide(tmp_path, make_bag):
    """`weakseg predict` with a HoVer-Net run: per slide the CSV, detections and label TIFF; slides.csv lists it."""
    import torch

    from weakseg import api
    from weakseg.learners import create_learner
    from weakseg.nuclei.data import NucleiImage

    truth = _slide_with_nuclei(tmp_path / "s.tif", side=256)
    rgb = tifffile.imread(tmp_path / "s.tif")[..., :3]
    torch.manual_seed(0)
    learner = create_learner("hovernet_seg", backbone="hovernet_tiny", downsample=1, steps_per_epoch=2, batch_size=2,
                             max_epochs=1, device="cpu", augment="none")
    learner.fit([NucleiImage("s", rgb, truth)])
    run = tmp_path / "run"
    run.mkdir()
    learner.save(run / "model.pt")
    (run / "recipe.yaml").write_text("name: t\nlearner: {name: hovernet_seg}\ndata: {bags: x}\n")
    make_bag(tmp_path / "bags" / "s.h5", rgb[None, :64, :64], slide_path=str(tmp_path / "s.tif"), mpp=0.25)
    out = api.predict(run, tmp_path / "bags", tmp_path / "maps")
    assert {"s.nuclei.csv", "s.nuclei.geojson", "s.instances.tif", "slides.csv"} <= {p.name for p in out.iterdir()}
    assert pd.read_csv(out / "slides.csv")["slide_id"].tolist() == ["s"]
    assert tifffile.imread(out / "s.instances.tif").shape == (256, 256)
