"""Cohort sources: PANDA folders and manifest CSVs become SlideRecords or RowErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg.cohort import CohortWarning, cohort_frame, load_source
from weakseg.errors import ManifestError

IDS = ["0005f7aaab2800f6170c399693a96917", "000920ad0b612851f8e01bcc880d9b3d", "b0a92a74cb53899311acc30b7405e101"]


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


@pytest.fixture
def panda_dir(tmp_path: Path) -> Path:
    root = tmp_path / "panda"
    root.mkdir()
    (root / "train.csv").write_text(
        "image_id,data_provider,isup_grade,gleason_score\n"
        f"{IDS[2]},radboud,2,4+3\n"  # row 2: contradiction, no mask
        f"{IDS[0]},karolinska,0,0+0\n"  # row 3
        f"{IDS[1]},karolinska,4,4+4\n"  # row 4
        "0018ae58b01bdadc8e347995b69f99aa,radboud,1,3+3\n"  # row 5: image missing on disk
        "001c62abd11fa4b57bf7a6c603a11bb9,radboud,9,3+3\n"  # row 6: bad ISUP
    )
    for slide_id in IDS:
        _touch(root / "train_images" / f"{slide_id}.tiff")
    for slide_id in IDS[:2]:
        _touch(root / "train_label_masks" / f"{slide_id}_mask.tiff")
    return root


def test_panda_folder(panda_dir: Path):
    records, errors = load_source(panda_dir)
    assert [r.slide_id for r in records] == sorted(IDS)
    by_id = {r.slide_id: r for r in records}
    neg, pos, odd = by_id[IDS[0]], by_id[IDS[1]], by_id[IDS[2]]
    assert neg.slide_path == panda_dir.absolute() / "train_images" / f"{IDS[0]}.tiff"
    assert neg.mask_path == panda_dir.absolute() / "train_label_masks" / f"{IDS[0]}_mask.tiff"
    assert (neg.label, neg.isup_grade, neg.gleason_score, neg.data_provider) == (0, 0, "0+0", "karolinska")
    assert (pos.label, pos.isup_grade, pos.warnings) == (1, 4, [])
    assert odd.mask_path is None and "no mask" in odd.warnings
    assert any("contradicts" in w for w in odd.warnings) and odd.isup_grade == 2
    assert [(e.row, e.slide_id) for e in errors] == [(5, "0018ae58b01bdadc8e347995b69f99aa"), (6, "001c62abd11fa4b57bf7a6c603a11bb9")]
    assert "not found" in errors[0].reason and "isup_grade" in errors[1].reason


def test_panda_train_csv_path_and_unchecked_files(panda_dir: Path):
    records, errors = load_source(panda_dir / "train.csv")
    assert len(records) == 3 and len(errors) == 2
    records, errors = load_source(panda_dir / "train.csv", check_files=False)
    assert len(records) == 4 and [e.row for e in errors] == [6]


def test_folder_without_train_csv(tmp_path: Path):
    with pytest.raises(ManifestError, match="train.csv"):
        load_source(tmp_path)


def test_manifest_relative_paths_labels_and_order(tmp_path: Path):
    sub = tmp_path / "cohort"
    _touch(sub / "slides" / "b.svs")
    _touch(sub / "slides" / "a.tiff")
    _touch(sub / "masks" / "a_mask.tiff")
    absolute = _touch(tmp_path / "elsewhere" / "c.tif")
    (sub / "manifest.csv").write_text(
        "slide_path,slide_id,mask_path,label,data_provider,isup_grade,gleason_score,split,case_id\n"
        "slides/b.svs,,,1,,,,train,p1\n"
        "slides/a.tiff,,masks/a_mask.tiff,,Karolinska,,3+4,test,p1\n"
        f"{absolute},cee,,,,0,negative,,\n"
    )
    records, errors = load_source(sub / "manifest.csv")
    assert errors == []
    assert [r.slide_id for r in records] == ["a", "b", "cee"]
    a, b, c = records
    assert a.slide_path == sub.absolute() / "slides" / "a.tiff"
    assert a.mask_path == sub.absolute() / "masks" / "a_mask.tiff"
    assert (a.label, a.data_provider, a.gleason_score, a.isup_grade, a.split, a.case_id) == (1, "karolinska", "3+4", None, "test", "p1")
    assert (b.label, b.mask_path, b.data_provider, b.split) == (1, None, "", "train")
    assert (c.slide_path, c.label, c.isup_grade, c.split, c.case_id) == (absolute, 0, 0, None, None)
    frame = cohort_frame(records)
    assert list(frame["slide_id"]) == ["a", "b", "cee"]
    assert frame["isup_grade"].isna().tolist() == [True, True, False]


def test_manifest_unlabeled_slide_is_fine(tmp_path: Path):
    _touch(tmp_path / "x.tiff")
    (tmp_path / "m.csv").write_text("slide_path\nx.tiff\n")
    (record,), errors = load_source(tmp_path / "m.csv")
    assert errors == [] and record.label is None and record.slide_id == "x"


def test_manifest_missing_slide_path_column(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("path,label\nx.tiff,1\n")
    with pytest.raises(ManifestError, match=r"m\.csv.*slide_path.*\['path', 'label'\]"):
        load_source(path)


def test_manifest_garbage_duplicates_and_unknown_columns(tmp_path: Path):
    for name in ("a", "b", "c", "d", "e", "f", "g", "h"):
        _touch(tmp_path / f"{name}.tiff")
    path = tmp_path / "m.csv"
    path.write_text(
        "slide_path,slide_id,label,isup_grade,gleason_score,split,mask_path,data_provider,notes\n"  # 1
        "a.tiff,,1,,,,,,hello\n"  # 2 ok
        "b.tiff,a,0,,,,,,\n"  # 3 duplicate id 'a'
        ",,,,,,,,\n"  # 4 blank: skipped
        ",z,1,,,,,,\n"  # 5 empty slide_path
        "c.tiff,,yes,,,,,,\n"  # 6 garbage label
        "d.tiff,,,6,,,,,\n"  # 7 ISUP out of range
        "e.tiff,,,,3+9,,,,\n"  # 8 unparsable gleason
        "f.tiff,,,,,holdout,,,\n"  # 9 bad split
        "g.tiff,,,,,,g_mask.tiff,radboud,\n"  # 10 mask missing on disk
        "h.tiff,,,,,,h.tiff,,\n"  # 11 mask without a known provider
        "missing.tiff,,,,,,,,\n"  # 12 slide missing
        "a.tiff,bad id,,,,,,,\n"  # 13 invalid id
        "a.tiff,ok,0,3,4+3,,,,\n"  # 14 ok, label contradicts ISUP
        "-x.tiff,,,,,,,,\n"  # 15 id derived from the file name is invalid
    )
    _touch(tmp_path / "-x.tiff")
    with pytest.warns(CohortWarning, match=r"unknown columns \['notes'\]"):
        records, errors = load_source(path)
    assert [r.slide_id for r in records] == ["a", "ok"]
    assert any("label 0 contradicts ISUP 3" in w for w in records[1].warnings)
    reasons = {e.row: e.reason for e in errors}
    assert sorted(reasons) == [3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15]
    assert "taken from the slide_path file name" in reasons[15]
    assert "duplicates row 2" in reasons[3]
    expected_columns = {5: "slide_path", 6: "label", 7: "isup_grade", 8: "gleason_score", 9: "split",
                        10: "mask_path", 11: "data_provider", 12: "slide_path", 13: "slide_id"}
    for row, column in expected_columns.items():
        assert f"column {column}" in reasons[row], (row, reasons[row])
    with pytest.warns(CohortWarning):
        records, errors = load_source(path, check_files=False)
    assert sorted(e.row for e in errors) == [3, 5, 6, 7, 8, 9, 11, 13, 15]
