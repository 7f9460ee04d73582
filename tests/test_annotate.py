"""``weakseg annotate``: QuPath GeoJSON / label-mask TIFF partial annotations → PU bags.

Round trips against ``weaken --mode pu`` are exact (no tolerance): the exported polygons run along
pixel edges (cut corners included), and both sides sample tile-pixel centres.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import weakseg  # noqa: F401
from weakseg.annotate import AnnotationError, annotate_bags, fill_polygon
from weakseg.bags import Bag, BagMeta, BagWriter
from weakseg.cli.main import app
from weakseg.errors import MaskMismatchError
from weakseg.maps.geojson import mask_to_features, write_geojson
from weakseg.tiling.tissue import detect_tissue
from weakseg.weaken import PU_EXCLUDED, PU_NEGATIVE, PU_POSITIVE, PU_UNLABELED, read_pu_labels, weaken_bags

T = 32
GRID = 4  # 4 x 4 tiles of 32 px: a 128 x 128 tile-pixel slide
# Separated cancer squares (y, x, size); some straddle tile borders.
BLOBS = [(4, 4, 10), (26, 40, 12), (70, 10, 8), (60, 60, 14), (100, 90, 10), (10, 100, 9)]
RING = (30, 70, 18, 6)  # a cancer ring (y, x, outer size, hole size): a polygon with a hole
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def label_map() -> np.ndarray:
    """Karolinska labels at tile resolution: 0 glass, 1 benign, 2 cancer."""
    lab = np.ones((T * GRID, T * GRID), dtype=np.uint8)
    lab[:, -T // 2 :] = 0
    lab[-T // 2 :, :] = 0
    for y, x, s in BLOBS:
        lab[y : y + s, x : x + s] = 2
    y, x, s, h = RING
    lab[y : y + s, x : x + s] = 2
    o = (s - h) // 2
    lab[y + o : y + o + h, x + o : x + o + h] = 1
    return lab


def write_bag(path: Path, *, slide_id: str = "s1", downsample: int = 1, with_masks: bool = True,
              slide_path: str = "", lab: np.ndarray | None = None) -> Path:
    lab = label_map() if lab is None else lab
    p = T * downsample
    cells = [(x, y) for y in range(GRID) for x in range(GRID)]
    coords = np.array([(x * p, y * p) for x, y in cells])
    masks = np.stack([lab[y * T : (y + 1) * T, x * T : (x + 1) * T] for x, y in cells])
    colour = np.array([[245, 245, 245], [200, 120, 170], [150, 60, 140]], np.uint8)  # glass, benign, cancer
    tiles = colour[masks]
    meta = BagMeta(slide_id=slide_id, label=1, data_provider="karolinska", tile_size=T, stride=T,
                   downsample=float(downsample), slide_path=slide_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with BagWriter(path, meta, tile_size=T, with_masks=with_masks, codec="raw") as w:
        if with_masks:
            w.append(tiles, coords, np.ones(len(coords)), masks=masks, cancer_fraction=(masks == 2).mean((1, 2)))
        else:
            w.append(tiles, coords, np.ones(len(coords)))
    return path


def stitch(bag: Bag, tiles: np.ndarray) -> np.ndarray:
    d = int(bag.meta.downsample)
    out = np.zeros((T * GRID, T * GRID), dtype=tiles.dtype)
    for (x, y), t in zip(bag.coords // d, tiles):
        out[y : y + T, x : x + T] = t
    return out


def pu_of(path: Path, **kw) -> np.ndarray:
    with Bag(path) as bag:
        return read_pu_labels(bag, **kw)


def feature(geometry: dict, name: str | None = "Tumor") -> dict:
    props = {"objectType": "annotation"} | ({"classification": {"name": name, "color": [200, 0, 0]}} if name else {})
    return {"type": "Feature", "geometry": geometry, "properties": props}


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def src(tmp_path: Path) -> Path:
    write_bag(tmp_path / "src" / "s1.h5")
    return tmp_path / "src"


# -- rasterisation ---------------------------------------------------------------------------------


def brute_even_odd(rings: list[np.ndarray], t: int) -> np.ndarray:
    """Pixel centres inside the rings by a per-point ray-crossing count (the textbook rule)."""
    yy, xx = np.mgrid[0:t, 0:t] + 0.5
    inside = np.zeros((t, t), dtype=bool)
    for ring in rings:
        for (xa, ya), (xb, yb) in zip(ring[:-1], ring[1:]):
            if ya == yb:
                continue
            crosses = (np.minimum(ya, yb) <= yy) & (yy < np.maximum(ya, yb))
            x = xa + (yy - ya) * (xb - xa) / (yb - ya)
            inside ^= crosses & (x > xx)
    return inside


def test_fill_polygon_matches_even_odd_rule_with_holes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        rings = []
        for radius in (18.0, 7.0):  # a star and a hole inside it, partly outside the tile
            angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
            r = radius * rng.uniform(0.6, 1.0, 9)
            ring = np.stack([14 + r * np.cos(angles), 12 + r * np.sin(angles)], 1)
            rings.append(np.vstack([ring, ring[:1]]))
        edges = np.concatenate([np.concatenate([r[:-1], r[1:]], 1) for r in rings])
        np.testing.assert_array_equal(fill_polygon(edges, 24), brute_even_odd(rings, 24))


def test_donut_and_multipolygon_at_tile_resolution(src: Path, tmp_path: Path) -> None:
    donut = feature({"type": "Polygon", "coordinates": [square(10, 10, 30, 30), square(15, 15, 25, 25)]})
    multi = feature({"type": "MultiPolygon", "coordinates": [[square(40, 2, 44, 6)], [square(50.2, 2, 52.9, 4)]]})
    dump(tmp_path / "ann" / "s1.geojson", {"type": "FeatureCollection", "features": [donut, multi]})
    report = annotate_bags(src, tmp_path / "out", tmp_path / "ann")
    with Bag(tmp_path / "out" / "s1.h5") as bag:
        pu = stitch(bag, read_pu_labels(bag))
    expected = np.zeros_like(pu, dtype=bool)
    expected[10:30, 10:30] = True
    expected[15:25, 15:25] = False
    expected[2:6, 40:44] = True
    expected[2:4, 50:52] = True  # centres 50.5, 51.5 lie in (50.2, 52.9); 52.5 does too
    expected[2:4, 52] = True
    np.testing.assert_array_equal(pu == PU_POSITIVE, expected & (label_map() != 0))
    assert report.pixels["s1"]["positive"] == int(expected.sum())


# -- round trips against weaken --------------------------------------------------------------------


def kept_regions(src: Path, tmp_path: Path, fraction: float, seed: int) -> np.ndarray:
    """The cancer regions ``weaken --mode pu`` keeps (no erosion), stitched at tile resolution."""
    (out,) = weaken_bags(src, tmp_path / "kept", "pu", positive_fraction=fraction, erode=0, seed=seed)
    with Bag(out) as bag:
        return stitch(bag, read_pu_labels(bag)) == PU_POSITIVE


@pytest.mark.parametrize(("downsample", "fraction", "erode"), [(1, 0.5, 0), (1, 1.0, 2), (2, 0.5, 3), (4, 1.0, 0)])
def test_geojson_round_trip_equals_weaken(tmp_path: Path, downsample: int, fraction: float, erode: int) -> None:
    src = write_bag(tmp_path / "src" / "s1.h5", downsample=downsample).parent
    kept = kept_regions(src, tmp_path, fraction, seed=3)
    assert kept.any() and (kept < (label_map() == 2)).any() == (fraction < 1)
    features = mask_to_features(kept, downsample)  # level-0 coordinates
    if fraction == 1.0:
        assert any(len(f["geometry"]["coordinates"]) > 1 for f in features)  # the ring's hole
    write_geojson(tmp_path / "qupath" / "s1.svs.geojson", features)  # QuPath's <image name>.geojson
    (weak,) = weaken_bags(src, tmp_path / "weak", "pu", positive_fraction=fraction, erode=erode, seed=3)
    report = annotate_bags(src, tmp_path / "ann", tmp_path / "qupath", erode=erode)
    assert report.written == [tmp_path / "ann" / "s1.h5"] and not report.failed and not report.unannotated
    np.testing.assert_array_equal(pu_of(tmp_path / "ann" / "s1.h5"), pu_of(weak))
    with h5py.File(weak, "r") as w, h5py.File(tmp_path / "ann" / "s1.h5", "r") as a:
        assert set(w.keys()) == set(a.keys())
        assert set(w.attrs) <= set(a.attrs)
        assert a.attrs["supervision"] == "pu" and a.attrs["erode"] == erode and a.attrs["source_bag"] == "../src/s1.h5"
        assert np.isnan(a.attrs["positive_fraction"]) and a.attrs["pu_background"] == "masks"


def write_label_tiff(path: Path, labels: np.ndarray, style: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if style == "panda":  # RGB, label in red, tiled, deflate (PANDA's masks)
        rgb = np.stack([labels, np.zeros_like(labels), np.zeros_like(labels)], -1)
        tifffile.imwrite(path, rgb, tile=(16, 16), photometric="rgb", compression="zlib")
    elif style == "strips":
        tifffile.imwrite(path, labels, rowsperstrip=5, compression="zlib")
    elif style == "raw":  # uncompressed and contiguous: read through a memory map
        tifffile.imwrite(path, labels.astype(np.uint16))
    elif style == "bilevel":
        tifffile.imwrite(path, labels > 0)
    return path


@pytest.mark.parametrize("style", ["panda", "strips", "raw", "bilevel"])
def test_label_tiff_round_trip_equals_weaken(tmp_path: Path, style: str) -> None:
    src = write_bag(tmp_path / "src" / "s1.h5", downsample=2).parent
    kept = kept_regions(src, tmp_path, 0.5, seed=1)
    level0 = np.kron(kept, np.ones((2, 2), dtype=bool)).astype(np.uint8) * 3  # any label > 0
    write_label_tiff(tmp_path / "masks" / "s1_partial.tif", level0, style)
    (weak,) = weaken_bags(src, tmp_path / "weak", "pu", positive_fraction=0.5, erode=2, seed=1)
    report = annotate_bags(src, tmp_path / "ann", tmp_path / "masks", erode=2)
    assert report.files == {"s1": [tmp_path / "masks" / "s1_partial.tif"]}
    np.testing.assert_array_equal(pu_of(tmp_path / "ann" / "s1.h5"), pu_of(weak))


def test_label_tiff_finer_than_tiles_is_sampled_at_tile_pixel_centres(tmp_path: Path) -> None:
    src = write_bag(tmp_path / "src" / "s1.h5", downsample=4).parent
    yy, xx = np.mgrid[0:512, 0:512]
    tissue = label_map() != 0
    # tile pixel (i, j) has its centre at level-0 (4j + 2, 4i + 2), inside level-0 pixel (4j + 2, 4i + 2)
    for phase, expected in ((2, tissue), (1, np.zeros_like(tissue))):
        labels = ((xx % 4 == phase) & (yy % 4 == phase)).astype(np.uint8)
        write_label_tiff(tmp_path / f"m{phase}" / "s1.tif", labels, "strips")
        annotate_bags(src, tmp_path / f"out{phase}", tmp_path / f"m{phase}")
        np.testing.assert_array_equal(stitch_from(tmp_path / f"out{phase}" / "s1.h5") == PU_POSITIVE, expected)


def write_slide(path: Path) -> Path:
    """A 256 x 256 two-level generic TIFF slide (levels 1 and 2) that OpenSlide opens."""
    img = np.full((256, 256, 3), 230, np.uint8)
    with tifffile.TiffWriter(path) as w:
        w.write(img, tile=(64, 64), photometric="rgb", compression="zlib")
        w.write(img[::2, ::2], tile=(64, 64), photometric="rgb", compression="zlib", subfiletype=1)
    return path


def test_label_tiff_at_a_pyramid_level_of_the_slide(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "s1.tiff")
    src = write_bag(tmp_path / "src" / "s1.h5", downsample=4, slide_path=str(slide)).parent  # tiles: 128 level-0 px
    kept = kept_regions(src, tmp_path, 1.0, seed=0)
    level1 = np.kron(kept, np.ones((2, 2), dtype=np.uint8))[:128, :128]  # slide level 1 = 128 x 128
    # The 4x tiles span 512 level-0 px; the slide is 256, so only the top-left 2 x 2 tiles lie on it.
    write_label_tiff(tmp_path / "masks" / "s1_mask.tiff", level1, "panda")
    annotate_bags(src, tmp_path / "ann", tmp_path / "masks")
    pu = pu_of(tmp_path / "ann" / "s1.h5")
    with Bag(tmp_path / "ann" / "s1.h5") as bag:
        on_slide = (bag.coords < 256).all(axis=1)
    expected = stitch_subset(kept, on_slide)
    np.testing.assert_array_equal(pu == PU_POSITIVE, expected)
    write_label_tiff(tmp_path / "bad" / "s1.tif", np.ones((100, 100), np.uint8), "strips")
    with pytest.raises(MaskMismatchError, match=r"s1\.tif: label mask is 100x100, neither .* 256x256"):
        annotate_bags(src, tmp_path / "ann2", tmp_path / "bad")


def stitch_subset(kept: np.ndarray, on_slide: np.ndarray) -> np.ndarray:
    """Per-tile ``kept`` for tiles on the slide, nothing elsewhere, as (N, T, T) in bag order."""
    cells = [(x, y) for y in range(GRID) for x in range(GRID)]
    tiles = np.stack([kept[y * T : (y + 1) * T, x * T : (x + 1) * T] for x, y in cells])
    tiles[~on_slide] = False
    return tiles


# -- semantics -------------------------------------------------------------------------------------


def test_negatives_unannotated_bags_and_positive_wins(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_bag(src / "s1.h5")
    write_bag(src / "s2.h5", slide_id="s2")
    both = [
        feature({"type": "Polygon", "coordinates": [square(0, 0, 20, 20)]}, "tumor"),  # classes match case-insensitively
        feature({"type": "Polygon", "coordinates": [square(10, 10, 40, 40)]}, "Stroma"),
        feature({"type": "Point", "coordinates": [5, 5]}, "Tumor"),  # not an area: skipped
    ]
    dump(tmp_path / "ann" / "s1.geojson", both)  # a bare list of Features
    report = annotate_bags(src, tmp_path / "pnu", tmp_path / "ann", tmp_path / "ann", negative_classes=["Stroma"])
    assert report.unannotated == ["s2"] and set(report.files) == {"s1"}
    assert any("Point" in n for n in report.notes)
    raw = stitch_from(tmp_path / "pnu" / "s1.h5", negatives=True)
    tissue = label_map() != 0
    pos = np.zeros_like(tissue)
    pos[0:20, 0:20] = True
    neg = np.zeros_like(tissue)
    neg[10:40, 10:40] = True
    np.testing.assert_array_equal(raw == PU_POSITIVE, pos & tissue)
    np.testing.assert_array_equal(raw == PU_NEGATIVE, neg & ~pos & tissue)
    assert report.pixels["s1"]["negative"] == int((neg & ~pos & tissue).sum())
    # PU readers (nnpu_seg, estimate_prior, refine) see negatives as unlabeled
    assert set(np.unique(pu_of(tmp_path / "pnu" / "s1.h5"))) == {PU_UNLABELED, PU_POSITIVE, PU_EXCLUDED}
    from weakseg.data.seg import SegTileDataset

    data = SegTileDataset(tmp_path / "pnu", target="pu")
    assert PU_NEGATIVE not in np.unique(data.read(np.arange(len(data)))[1])
    data.close()
    # an unannotated bag: all tissue unlabeled, background excluded
    np.testing.assert_array_equal(stitch_from(tmp_path / "pnu" / "s2.h5"), np.where(tissue, PU_UNLABELED, PU_EXCLUDED))
    # without --negatives the negative class is recognised, skipped, never recorded
    report = annotate_bags(src, tmp_path / "pu", tmp_path / "ann", negative_classes=["Stroma"])
    assert PU_NEGATIVE not in stitch_from(tmp_path / "pu" / "s1.h5", negatives=True)
    assert any("'Stroma'" in n for n in report.notes)
    with pytest.raises(AnnotationError, match="--require-all: 1 bag.*s2"):
        annotate_bags(src, tmp_path / "all", tmp_path / "ann", negative_classes=["Stroma"], require_all=True)
    assert not (tmp_path / "all").exists()


def test_nnpu_seg_trains_on_bags_with_negatives(tmp_path: Path) -> None:
    from weakseg.learners import create_learner

    src = write_bag(tmp_path / "src" / "s1.h5").parent
    ann = [feature({"type": "Polygon", "coordinates": [square(4, 4, 14, 14)]}),
           feature({"type": "Polygon", "coordinates": [square(20, 60, 90, 100)]}, "Stroma")]
    dump(tmp_path / "ann" / "s1.geojson", ann)
    annotate_bags(src, tmp_path / "pnu", tmp_path / "ann", tmp_path / "ann", negative_classes=["Stroma"])
    assert (stitch_from(tmp_path / "pnu" / "s1.h5", negatives=True) == PU_NEGATIVE).any()
    learner = create_learner("nnpu_seg", prior=0.1, backbone="unet_tiny", batch_size=8, max_epochs=1, device="cpu",
                             random_state=0).fit(tmp_path / "pnu")
    assert np.isfinite(learner.history_[-1]["train_nnpu_risk"])


def stitch_from(path: Path, **kw) -> np.ndarray:
    with Bag(path) as bag:
        return stitch(bag, read_pu_labels(bag, **kw))


def test_bag_without_masks_uses_the_tissue_detector(tmp_path: Path) -> None:
    src = write_bag(tmp_path / "src" / "s1.h5", with_masks=False).parent
    dump(tmp_path / "ann" / "s1.geojson", feature({"type": "Polygon", "coordinates": [square(0, 0, 128, 20)]}))
    annotate_bags(src, tmp_path / "out", tmp_path / "ann")
    with Bag(tmp_path / "out" / "s1.h5") as bag:
        assert bag.meta.extra["pu_background"] == "tissue"
        tissue = stitch(bag, np.stack([detect_tissue(t) for t in bag.read_tiles()]))
        pu = stitch(bag, read_pu_labels(bag))
    band = np.zeros_like(tissue)
    band[:20] = True
    assert (tissue != (label_map() != 0)).mean() < 0.02  # the detector finds the tissue
    np.testing.assert_array_equal(pu, np.where(tissue, np.where(band, PU_POSITIVE, PU_UNLABELED), PU_EXCLUDED))


# -- named errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"bad\.geojson: not valid JSON"),
    (json.dumps({"type": "Polygon", "coordinates": []}), r"bad\.geojson: expected a GeoJSON FeatureCollection"),
    (json.dumps([feature(SQUARE), {"type": "Feature"}]), r"bad\.geojson: feature 1: 'geometry' must be a GeoJSON geometry"),
    (json.dumps([feature({"type": "Polygon", "coordinates": [[["a", "b"], [1, 2], [3, 4]]]})]),
     r"feature 0: geometry\.coordinates\[0\] must be a list of \[x, y\] number pairs"),
    (json.dumps([feature(SQUARE), feature(SQUARE), feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]})]),
     r"feature 2: geometry\.coordinates\[0\] has fewer than 3 distinct positions"),
    (json.dumps([feature({"type": "Circle", "coordinates": [1, 2]})]), r"feature 0: unknown geometry type 'Circle'"),
    (json.dumps({"type": "FeatureCollection", "features": [feature(SQUARE), [1, 2]]}), r"feature 1: expected a GeoJSON Feature"),
    (json.dumps([feature({"type": "MultiPolygon", "coordinates": [[square(0, 0, 4, 4)], "x"]})]),
     r"feature 0: geometry\.coordinates\[1\] of a Polygon"),
])
def test_malformed_geojson_names_file_and_feature(src: Path, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "ann" / "s1.bad.geojson"  # slide id: the name before its first dot
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message):
        annotate_bags(src, tmp_path / "out", path)


def test_unknown_class_lists_the_known_ones(src: Path, tmp_path: Path) -> None:
    dump(tmp_path / "ann" / "s1.geojson", [feature(SQUARE), feature(SQUARE, "Necrosis")])
    with pytest.raises(AnnotationError, match=r"s1\.geojson: feature 1: unknown class 'Necrosis'; known classes: "
                                              r"Tumor \(positive\), Stroma \(negative\)"):
        annotate_bags(src, tmp_path / "out", tmp_path / "ann", negative_classes=("Stroma",))
    assert not (tmp_path / "out").exists()  # nothing written on bad input


def test_polygon_outside_the_slide(src: Path, tmp_path: Path) -> None:
    inside = feature({"type": "Polygon", "coordinates": [square(120, 120, 200, 200)]})  # partly outside: fine
    outside = feature({"type": "MultiPolygon", "coordinates": [[square(1, 1, 3, 3)], [square(500, 0, 600, 10)]]})
    dump(tmp_path / "ann" / "s1.geojson", [inside, outside])
    with pytest.raises(AnnotationError, match=r"feature 1 \(polygon 1\) lies entirely outside slide 's1': "
                                              r"x 500\.\.600, y 0\.\.10 against 0\.\.128 x 0\.\.128"):
        annotate_bags(src, tmp_path / "out", tmp_path / "ann")


def test_file_for_a_slide_not_in_bags(src: Path, tmp_path: Path) -> None:
    dump(tmp_path / "ann" / "s1.geojson", [feature(SQUARE)])
    dump(tmp_path / "ann" / "s9.ndpi.geojson", [feature(SQUARE)])
    with pytest.raises(AnnotationError, match=r"s9\.ndpi\.geojson: no bag for slide 's9' .*slide ids: s1"):
        annotate_bags(src, tmp_path / "out", tmp_path / "ann")
    write_label_tiff(tmp_path / "m" / "s10_mask.tif", np.zeros((128, 128), np.uint8), "strips")  # s1 is no prefix of s10
    with pytest.raises(AnnotationError, match=r"s10_mask\.tif: no bag for slide"):
        annotate_bags(src, tmp_path / "out", tmp_path / "m")
    with pytest.raises(AnnotationError, match=r"nowhere: no such file or folder \(--positives\)"):
        annotate_bags(src, tmp_path / "out", tmp_path / "nowhere")


def test_other_bad_inputs(src: Path, tmp_path: Path) -> None:
    dump(tmp_path / "ann" / "s1.geojson", [feature(SQUARE, None)])  # unclassified
    with pytest.raises(AnnotationError, match="feature 0: no classification"):
        annotate_bags(src, tmp_path / "out", tmp_path / "ann", tmp_path / "ann")
    with pytest.raises(AnnotationError, match="both a positive and a negative class"):
        annotate_bags(src, tmp_path / "out", tmp_path / "ann", negative_classes=("TUMOR",))
    write_label_tiff(tmp_path / "m" / "s1.tif", np.zeros((128, 128), np.uint8), "strips")
    with pytest.raises(AnnotationError, match="either positive or negative"):
        annotate_bags(src, tmp_path / "out", tmp_path / "m", tmp_path / "m")
    write_label_tiff(tmp_path / "small" / "s1.tif", np.zeros((64, 64), np.uint8), "strips")
    with pytest.raises(MaskMismatchError, match="smaller than 128x128"):
        annotate_bags(src, tmp_path / "out", tmp_path / "small")
    # unclassified features take the role of the option they came from
    report = annotate_bags(src, tmp_path / "out", tmp_path / "ann")
    assert report.pixels["s1"]["positive"] == 1


# -- command line ----------------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_bag(src / "s1.h5")
    runner = CliRunner()
    dump(tmp_path / "ann" / "s1.geojson", [feature({"type": "Polygon", "coordinates": [square(4, 4, 14, 14)]}, "Cancer")])
    res = runner.invoke(app, ["annotate", str(src), str(tmp_path / "out"), "--positives", str(tmp_path / "ann"),
                              "--positive-class", "Cancer"])
    assert res.exit_code == 0, res.output
    assert "s1: 100 positive, 0 negative" in res.output and "wrote 1 PU bag(s)" in res.output
    res = runner.invoke(app, ["annotate", str(src), str(tmp_path / "out2"), "--positives", str(tmp_path / "ann")])
    assert res.exit_code == 2 and "unknown class 'Cancer'; known classes: Tumor (positive)" in res.output
    # partial failure: a second bag whose masks hold a label Karolinska does not define
    bad = write_bag(src / "s2.h5", slide_id="s2")
    with h5py.File(bad, "a") as f:
        f["masks"][0, 0, 0] = 7
    res = runner.invoke(app, ["annotate", str(src), str(tmp_path / "out3"), "--positives", str(tmp_path / "ann"),
                              "--positive-class", "Cancer"])
    assert res.exit_code == 1, res.output
    assert "failed: s2" in res.output and "s2.h5: masks of tiles" in res.output and "wrote 1 PU bag(s)" in res.output
    assert (tmp_path / "out3" / "s1.h5").is_file() and not (tmp_path / "out3" / "s2.h5").exists()


# -- real data -------------------------------------------------------------------------------------


def test_real_panda_mask_as_label_tiff(shared_data: Path, tmp_path: Path) -> None:
    """A real pyramidal PANDA-layout mask read as a partial label mask equals the tiler's own mask reads."""
    from weakseg.cohort import SlideRecord
    from weakseg.panda import to_common_labels
    from weakseg.tiling.tiler import TileConfig, tile_slide

    root = shared_data / "glas_train"
    slide_id = "0829c364466b3bf3954098e6adc604b0"
    slide, mask = root / "train_images" / f"{slide_id}.tiff", root / "train_label_masks" / f"{slide_id}_mask.tiff"
    if not (slide.is_file() and mask.is_file()):
        pytest.skip("glas_train slide not available")
    record = SlideRecord(slide_id, slide, mask, 1, "karolinska", 2, "3+4", None)
    res = tile_slide(record, tmp_path / "bags", TileConfig(tile_size=64, level=1, codec="lzf", min_coverage=0.1))
    assert res.status == "ok", res.reason
    report = annotate_bags(tmp_path / "bags", tmp_path / "out", mask)  # <slide_id>_mask.tiff
    assert report.files == {slide_id: [mask.resolve()]}
    with Bag(tmp_path / "bags" / f"{slide_id}.h5") as bag:
        assert bag.meta.downsample == pytest.approx(4.0)
        common = to_common_labels(bag.read_masks(), "karolinska")
    np.testing.assert_array_equal(pu_of(tmp_path / "out" / f"{slide_id}.h5"), np.where(common == 0, PU_EXCLUDED, PU_POSITIVE))
