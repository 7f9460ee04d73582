"""The tile-bag contract: writing, reading, codecs, atomicity, errors."""

from __future__ import annotations

import pickle
import shutil

import h5py
import numpy as np
import pytest

from weakseg.bags import FORMAT_VERSION, REQUIRED_ATTRS, Bag, BagMeta, BagWriter, is_complete_bag, list_bags
from weakseg.errors import BagError
from weakseg.weaken import weaken_bags


def _write(path, codec="raw", n=5, t=16, masks=True, seed=0):
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, (n, t, t, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (n, t, t), dtype=np.uint8)
    coords = np.stack([np.arange(n) * t, np.zeros(n, dtype=int)], axis=1)
    meta = BagMeta(slide_id=path.stem, label=1, data_provider="karolinska", isup_grade=2, gleason_score="3+4")
    with BagWriter(path, meta, tile_size=t, with_masks=masks, codec=codec) as w:
        w.append(tiles[:2], coords[:2], np.ones(2), masks=labels[:2] if masks else None,
                 cancer_fraction=np.full(2, 0.5) if masks else None)
        w.append(tiles[2:], coords[2:], np.ones(n - 2), masks=labels[2:] if masks else None,
                 cancer_fraction=np.full(n - 2, 0.5) if masks else None)
    return tiles, labels, coords


@pytest.mark.parametrize("codec", ["raw", "lzf", "gzip"])
def test_lossless_roundtrip_any_index_order(tmp_path, codec):
    tiles, labels, coords = _write(tmp_path / "s1.h5", codec=codec)
    with Bag(tmp_path / "s1.h5") as bag:
        assert len(bag) == 5 and bag.codec == codec and bag.tile_size == 16
        idx = [3, 0, 3, 4]
        np.testing.assert_array_equal(bag.read_tiles(idx), tiles[idx])
        np.testing.assert_array_equal(bag.read_masks(idx), labels[idx])
        np.testing.assert_array_equal(bag.coords, coords)
        assert bag.meta.gleason_score == "3+4" and bag.label == 1


def test_jpeg_codec_decodes_transparently(tmp_path):
    t = 32
    smooth = np.zeros((2, t, t, 3), dtype=np.uint8)
    smooth[0] += 200
    smooth[1, :, : t // 2] = 90
    meta = BagMeta(slide_id="j", label=0)
    with BagWriter(tmp_path / "j.h5", meta, tile_size=t, with_masks=False, codec="jpeg", quality=95) as w:
        w.append(smooth, np.zeros((2, 2)), np.ones(2))
    with Bag(tmp_path / "j.h5") as bag:
        out = bag.read_tiles([1, 0])
        assert out.shape == (2, t, t, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - smooth[[1, 0]].astype(int)).mean() < 3
        with pytest.raises(BagError, match="no masks"):
            bag.read_masks([0])


def test_required_attributes_and_tile_size_authoritative(tmp_path):
    _write(tmp_path / "a.h5", t=16)
    with h5py.File(tmp_path / "a.h5") as f:
        assert all(k in f.attrs for k in REQUIRED_ATTRS)
        assert f.attrs["format_version"] == FORMAT_VERSION and f.attrs["tile_size"] == 16
        assert f["coords"].attrs["patch_level"] == 0 and f["tiles"].chunks == (1, 16, 16, 3)


def test_failed_writer_leaves_nothing(tmp_path):
    target = tmp_path / "crash.h5"
    with pytest.raises(RuntimeError):
        with BagWriter(target, BagMeta(slide_id="crash"), tile_size=8, with_masks=False, codec="raw") as w:
            w.append(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 2)), np.ones(1))
            raise RuntimeError("killed mid-slide")
    assert list(tmp_path.iterdir()) == []
    assert not is_complete_bag(target)


def test_incomplete_and_missing_bags_are_clear_errors(tmp_path):
    with h5py.File(tmp_path / "half.h5", "w") as f:
        f.attrs["slide_id"] = "half"
    with pytest.raises(BagError, match="incomplete bag"):
        Bag(tmp_path / "half.h5")
    with pytest.raises(BagError, match="no such bag"):
        Bag(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(BagError, match="unreadable bag"):
        Bag(tmp_path / "junk.h5")


def test_weak_bag_with_moved_source_names_the_link(tmp_path):
    _write(tmp_path / "src" / "a.h5")
    weaken_bags(tmp_path / "src", tmp_path / "weak", "slide")
    assert len(Bag(tmp_path / "weak" / "a.h5")) == 5
    shutil.rmtree(tmp_path / "src")
    with pytest.raises(BagError, match=r"\.\./src/a\.h5"):
        Bag(tmp_path / "weak" / "a.h5")


def test_pickled_bag_reopens_lazily(tmp_path):
    tiles, _, _ = _write(tmp_path / "p.h5")
    bag = Bag(tmp_path / "p.h5")
    bag.read_tiles([0])  # opens the handle
    clone = pickle.loads(pickle.dumps(bag))
    np.testing.assert_array_equal(clone.read_tiles([2]), tiles[[2]])
    bag.close()
    clone.close()


def test_list_bags_sorted_and_skips_temporaries(tmp_path):
    for name in ("b", "a"):
        _write(tmp_path / f"{name}.h5")
    (tmp_path / ".a.h5.tmp.h5").write_bytes(b"")
    (tmp_path / "a.features.hdf5").write_bytes(b"")
    assert [p.name for p in list_bags(tmp_path)] == ["a.h5", "b.h5"]
    with pytest.raises(BagError):
        list_bags(tmp_path / "missing")
