"""Stage artifact records: reused only when finished with the same settings (weakseg.artifacts)."""

from __future__ import annotations

import json

import pytest

from weakseg.artifacts import RECORD, read_record, settings_hash, stage
from weakseg.errors import WeaksegError


def _run(folder, settings, work=lambda f: (f / "out.txt").write_text("x"), **kw):
    with stage(folder, "weaken", settings, **kw) as st:
        if not st.reused:
            work(folder)
    return st.reused


def test_same_settings_reused_other_settings_redone(tmp_path):
    folder = tmp_path / "weak"
    assert _run(folder, {"fraction": 0.3, "seed": 0}) is False
    record = read_record(folder)
    assert record.status == "done" and record.stage == "weaken"
    assert record.settings_hash == settings_hash({"seed": 0, "fraction": 0.3})  # key order does not matter
    assert _run(folder, {"fraction": 0.3, "seed": 0}) is True
    assert _run(folder, {"fraction": 0.5, "seed": 0}) is False
    assert read_record(folder).settings["fraction"] == 0.5


def test_tuples_and_lists_hash_alike():
    assert settings_hash({"size": (64, 64)}) == settings_hash({"size": [64, 64]})
    assert settings_hash({"size": (64, 64)}) != settings_hash({"size": [64, 65]})


def test_failed_stage_is_recorded_and_not_reused(tmp_path):
    folder = tmp_path / "weak"

    def boom(f):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _run(folder, {"a": 1}, work=boom)
    record = read_record(folder)
    assert record.status == "failed" and "disk full" in record.error
    assert _run(folder, {"a": 1}) is False
    assert read_record(folder).status == "done"


def test_interrupted_stage_is_not_reused(tmp_path):
    folder = tmp_path / "weak"
    _run(folder, {"a": 1})
    data = json.loads((folder / RECORD).read_text())
    data["status"] = "running"  # a run killed mid-stage leaves this
    (folder / RECORD).write_text(json.dumps(data))
    assert _run(folder, {"a": 1}) is False


def test_clear_empties_a_stale_folder(tmp_path):
    folder = tmp_path / "weak"
    _run(folder, {"a": 1}, work=lambda f: (f / "old.txt").write_text("old"))
    _run(folder, {"a": 2}, clear=True)
    assert not (folder / "old.txt").exists() and (folder / "out.txt").exists()


def test_damaged_record_names_the_file(tmp_path):
    folder = tmp_path / "weak"
    folder.mkdir()
    (folder / RECORD).write_text("{not json")
    with pytest.raises(WeaksegError, match=str(folder / RECORD)):
        read_record(folder)


def test_unfinished_artifact_with_same_settings_is_kept_for_resume(tmp_path):
    folder = tmp_path / "tiles"
    with pytest.raises(KeyboardInterrupt):
        with stage(folder, "tile", {"a": 1}, clear=True):
            (folder / "bag1.h5").write_text("done before the kill")
            raise KeyboardInterrupt
    with stage(folder, "tile", {"a": 1}, clear=True) as st:
        assert not st.reused and st.resumed and (folder / "bag1.h5").exists()
    with stage(folder, "tile", {"a": 2}, clear=True) as st:
        assert not st.resumed and not (folder / "bag1.h5").exists()


def test_a_record_elsewhere_leaves_the_folder_empty(tmp_path):
    run, record = tmp_path / "runs" / "m", tmp_path / "runs" / "m.artifact.json"
    with stage(run, "train", {"lr": 0.1}, record=record) as st:
        assert list(run.iterdir()) == [] and not st.reused
    assert read_record(run, record).status == "done" and not (run / RECORD).exists()
