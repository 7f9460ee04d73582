"""Feature cache: sidecar written, keyed, resumed; `weakseg embed`; abmil on cached features."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from weakseg.bags import Bag, list_bags
from weakseg.cli.main import app
from weakseg.data import H5Bags, write_toy_bags
from weakseg.encoders import EncoderWeightsError
from weakseg.errors import BagError
from weakseg.features import (
    FEATURES_FORMAT,
    embed_bags,
    list_feature_keys,
    read_features,
    resolve_feature_key,
    sidecar_path,
)
from weakseg.learners import create_learner


@pytest.fixture
def bags(tmp_path):
    write_toy_bags(tmp_path / "bags", n_bags=6, n_tiles=(3, 9), tile_size=16, seed=2)
    return tmp_path / "bags"


def test_sidecar_written_keyed_and_resumed(bags) -> None:
    res = embed_bags(bags, "colon27", random_init=True, batch_size=4)
    assert [r.status for r in res] == ["written"] * 6
    first = res[0]
    assert first.sidecar == sidecar_path(first.bag) and first.sidecar.name == "toy000.features.hdf5"
    with h5py.File(first.sidecar, "r") as f, Bag(first.bag) as bag:
        assert f.attrs["format"] == FEATURES_FORMAT
        g = f[first.key]
        assert g["features"].shape == (len(bag), g.attrs["dim"]) and g.attrs["checkpoint_sha256"] == "random-init-seed0"
        assert "input_size" in g.attrs["preprocessing"]
    again = embed_bags(bags, "colon27", random_init=True)
    assert {r.status for r in again} == {"skipped"}
    other = embed_bags(bags, "colon27", random_init=True, seed=1)  # other weights → another key, same file
    assert other[0].key != first.key and set(list_feature_keys(first.bag)) == {first.key, other[0].key}
    a, b = read_features(first.bag, first.key), read_features(first.bag, other[0].key)
    assert a.shape == b.shape and not np.allclose(a, b)
    np.testing.assert_array_equal(read_features(first.bag, first.key, [2, 0]), a[[2, 0]])
    with pytest.raises(BagError, match="several feature sets"):
        resolve_feature_key(first.bag)
    assert not list(bags.glob(".*part"))  # no temporary files left behind


def test_features_match_a_direct_forward(bags) -> None:
    res = embed_bags(bags, "colon27", random_init=True, seed=5)
    from weakseg.features import FeatureExtractor

    ex = FeatureExtractor("colon27", random_init=True, tile_size=16, seed=5)
    with Bag(res[1].bag) as bag:
        direct = ex(bag.read_tiles())
    np.testing.assert_allclose(read_features(res[1].bag), direct, rtol=1e-5, atol=1e-6)


def test_weights_are_required_unless_random_init(bags, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(EncoderWeightsError, match="--random-init"):
        embed_bags(bags, "resnet18")
    with pytest.raises(EncoderWeightsError, match="missing.pth"):
        embed_bags(bags, "resnet18", pretrained_path=tmp_path / "missing.pth")
    assert not any(bags.glob("*.features.hdf5"))


def test_cli_embed_then_abmil_on_cached_features(bags, tmp_path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["embed", str(bags), "--encoder", "colon27", "--random-init", "--batch-size", "8"])
    assert ok.exit_code == 0, ok.output
    assert "6 bag(s) written" in ok.output
    resumed = runner.invoke(app, ["embed", str(bags), "--encoder", "colon27", "--random-init"])
    assert "6 already cached" in resumed.output
    bad = runner.invoke(app, ["embed", str(bags), "--encoder", "colon27", "--checkpoint", str(tmp_path / "w.pt")])
    assert bad.exit_code == 2 and "w.pt" in bad.output
    src = H5Bags(bags, features=True)
    assert src.kind == "features" and len(src) == 6 and len(list_bags(bags)) == 6  # sidecars are not bags
    m = create_learner("abmil", encoder="features", embed_dim=16, attention_dim=8, max_epochs=1, device="cpu")
    m.fit(bags)
    assert m.predict_proba(bags).shape == (6, 2)
    assert len(m.instance_scores(sorted(bags.glob("toy000.h5"))[0])) == len(Bag(bags / "toy000.h5"))
