"""The real-slide pipeline on the real cohorts in ../shared/data (skipped without them).

prostate_gleason: 11 real prostate tiles with pathologist Gleason masks in the Radboud convention
(1 stroma, 2 benign epithelium, 3/4/5 Gleason patterns). Pins tile → info → show → weaken →
predict on real tissue, with a model trained (briefly) on glas_train, at the resolution the bags
were tiled at.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from weakseg.bags import Bag, list_bags
from weakseg.cli.main import app
from weakseg.panda import to_common_labels

pytestmark = pytest.mark.shared
runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def prostate_bags(shared_data: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prostate") / "bags"
    _ok(["tile", str(shared_data / "prostate_gleason"), str(out), "--mpp", "2.0", "--tile-size", "128"])
    return out


def test_radboud_masks_on_real_tissue(prostate_bags: Path) -> None:
    paths = list_bags(prostate_bags)
    assert len(paths) == 11
    manifest = pd.read_csv(prostate_bags / "manifest.csv")
    assert (manifest["status"] == "ok").all()
    raw_values: set[int] = set()
    for path in paths:
        with Bag(path) as bag:
            assert bag.meta.data_provider == "radboud" and bag.label == 1
            assert bag.meta.mpp == pytest.approx(2.0, rel=1e-3) and bag.meta.downsample == pytest.approx(2.0, rel=1e-3)
            masks = bag.read_masks()
            raw_values |= set(np.unique(masks).tolist())
            common = to_common_labels(masks, "radboud")
            # cancer_fraction is the share of Gleason-pattern pixels (3/4/5 -> common label 2) per tile
            expected = (common == 2).mean(axis=(1, 2))
            np.testing.assert_allclose(bag.cancer_fraction, expected, atol=1e-6)
    assert {1, 2} <= raw_values and raw_values & {3, 4, 5}, raw_values
    assert raw_values <= {0, 1, 2, 3, 4, 5}


def test_info_and_show(prostate_bags: Path, tmp_path: Path) -> None:
    out = _ok(["info", str(prostate_bags)])
    assert "radboud" in out and "11 bag(s)" in out
    first = list_bags(prostate_bags)[0]
    png = tmp_path / "overview.png"
    _ok(["show", str(first), "--out", str(png)])
    assert png.stat().st_size > 1000


def test_weaken_and_predict_with_a_glas_model(prostate_bags: Path, shared_data: Path, tmp_path: Path) -> None:
    _ok(["weaken", str(prostate_bags), str(tmp_path / "pu"), "--mode", "pu", "--positive-fraction", "0.5"])
    from weakseg.weaken import PU_POSITIVE, read_pu_labels

    n_positive = 0
    for path in list_bags(tmp_path / "pu"):
        with Bag(path) as bag:
            n_positive += int((read_pu_labels(bag) == PU_POSITIVE).sum())
    assert n_positive > 0
    glas = tmp_path / "glas"
    _ok(["tile", str(shared_data / "glas_train"), str(glas), "--mpp", "2.0", "--tile-size", "128"])
    run = tmp_path / "run"
    _ok(["train", "supervised_transunet", "--profile", "tiny", "--set", f"data.bags={glas}",
         "--set", "learner.params.max_epochs=1", "--out", str(run)])
    maps = tmp_path / "maps"
    sample = tmp_path / "sample"
    sample.mkdir()
    for path in list_bags(prostate_bags)[:2]:
        (sample / path.name).symlink_to(path)
    _ok(["predict", str(run), str(sample), "--out", str(maps)])
    slides = pd.read_csv(maps / "slides.csv")
    assert len(slides) == 2 and slides["prob"].between(0, 1).all()
    for sid in slides["slide_id"]:
        meta = json.loads((maps / f"{sid}.json").read_text())
        assert meta["mpp"] == pytest.approx(2.0 * meta["map_downsample"], rel=1e-3)  # the bags' resolution
        assert (maps / f"{sid}.prob.tif").is_file()


def test_demo_on_a_real_panda_folder(shared_data: Path, tmp_path: Path) -> None:
    """`weakseg demo --real` runs the same study on any PANDA-layout folder (here the prostate cohort)."""
    from weakseg.demo import DemoConfig, run_demo

    config = DemoConfig(real=shared_data / "prostate_gleason", mpp=2.0, level=None, tile_size=128, n_maps=1,
                        methods=("supervised",), extra_overrides={"supervised": ["learner.params.max_epochs=1"]})
    table = run_demo(tmp_path, config, log=lambda _: None)
    dice = table[(table["metric"] == "dice")].set_index("method")["value"]
    assert {"supervised", "baseline:slide-label"} <= set(dice.index)
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "Real cohort" in summary and "prostate_gleason" in summary
    assert not (tmp_path / "cohort").exists()  # nothing synthesised
