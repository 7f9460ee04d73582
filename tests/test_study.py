"""The comparison study behind the demo and the real-data benchmark: stages, reuse, and settings."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from weakseg.artifacts import read_record
from weakseg.demo import DemoConfig, run_demo
from weakseg.errors import WeaksegError
from weakseg.study import StudyConfig, resolve_methods

FAST = ["learner.params.max_epochs=1"]


def _config(**kw) -> DemoConfig:
    base = dict(slides=8, size=(2048, 768), tile_size=64, level=1, test_fraction=0.25, n_maps=1, positive_fraction=0.5,
                methods=("supervised", "nnpu"),
                extra_overrides={"supervised": FAST, "nnpu": FAST})
    base.update(kw)
    return DemoConfig(**base)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study")
    run_demo(out, _config(), log=lambda _: None)
    return out


def test_results_table_and_report(demo_dir: Path) -> None:
    results = pd.read_csv(demo_dir / "results.csv")
    methods = set(results["method"])
    assert {"supervised", "nnpu", "baseline:all-cancer", "baseline:slide-label"} <= methods
    dice = results[results["metric"] == "dice"].set_index("method")["value"]
    assert dice.dropna().between(0, 1).all() and "supervised" in dice.index
    cpu = results[results["metric"] == "train_cpu_min"].set_index("method")["value"]
    assert (cpu > 0).all() and set(cpu.index) == {"supervised", "nnpu"}
    summary = (demo_dir / "report" / "summary.md").read_text()
    assert "true π" in summary and "supervised" in summary
    assert list((demo_dir / "maps" / "supervised").glob("*.prob.tif"))


def test_rerun_reuses_finished_stages(demo_dir: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in (demo_dir / "runs").glob("*/timing.json")}
    run_demo(demo_dir, _config(), log=lambda _: None)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_changed_settings_redo_only_what_they_touch(demo_dir: Path) -> None:
    """A new positive fraction remakes the PU bags and retrains nnPU, not the supervised run."""
    sup = demo_dir / "runs" / "supervised" / "timing.json"
    nnpu = demo_dir / "runs" / "nnpu" / "timing.json"
    before_sup, before_nnpu = sup.stat().st_mtime_ns, nnpu.stat().st_mtime_ns
    run_demo(demo_dir, _config(positive_fraction=1.0), log=lambda _: None)
    assert sup.stat().st_mtime_ns == before_sup
    assert nnpu.stat().st_mtime_ns != before_nnpu
    record = read_record(demo_dir / "weak" / "pu")
    assert record.status == "done" and record.settings["positive_fraction"] == 1.0


def test_unknown_method_is_named() -> None:
    with pytest.raises(WeaksegError, match="unknown method.*'mil_refin'"):
        resolve_methods(["supervised", "mil_refin"])
    assert StudyConfig().methods == ("supervised", "nnpu", "mil_refine")


def test_demo_cohort_is_remade_when_its_settings_change(tmp_path: Path) -> None:
    """Issue 9: the cohort was reused whatever --slides/--size/--seed said."""
    from weakseg.demo import make_demo_cohort

    config = DemoConfig(slides=2, size=(512, 512), seed=0)
    cohort = make_demo_cohort(tmp_path, config, log=lambda _: None)
    first = sorted(p.name for p in (cohort / "train_images").iterdir())
    again = make_demo_cohort(tmp_path, DemoConfig(slides=3, size=(512, 512), seed=0), log=lambda _: None)
    assert len(list((again / "train_images").iterdir())) == 3 and len(first) == 2
    assert read_record(cohort).settings["slides"] == 3
