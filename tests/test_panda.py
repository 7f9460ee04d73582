"""PANDA conventions: Gleason → ISUP, label maps, mask decoding, train.csv validation."""

from __future__ import annotations

import numpy as np
import pytest

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg.errors import ManifestError
from weakseg.panda import (
    BACKGROUND,
    BENIGN,
    CANCER,
    COMMON_LABELS,
    KAROLINSKA_LABELS,
    RADBOUD_LABELS,
    decode_mask_rgb,
    gleason_to_isup,
    is_negative,
    label_names,
    read_train_csv,
    to_common_labels,
)

CONTRADICTION_ID = "b0a92a74cb53899311acc30b7405e101"


@pytest.mark.parametrize(
    ("score", "isup"),
    [
        ("negative", 0), ("0+0", 0), ("3+3", 1), ("3+4", 2), ("4+3", 3), ("4+4", 4), ("3+5", 4),
        ("5+3", 4), ("4+5", 5), ("5+4", 5), ("5+5", 5), (" 4 + 3 ", 3), ("Negative", 0),
    ],
)
def test_gleason_to_isup_table(score, isup):
    assert gleason_to_isup(score) == isup
    assert is_negative(score) == (isup == 0)


@pytest.mark.parametrize("score", ["", "3", "3+", "3+2", "6+6", "0+3", "4-3", "3+3+3", "nan", "positive"])
def test_gleason_to_isup_rejects_and_names_value(score):
    with pytest.raises(ValueError, match=repr(score).replace("+", r"\+")):
        gleason_to_isup(score)


def test_label_maps_per_provider():
    raw = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(
        to_common_labels(raw, "radboud"), [[BACKGROUND, BENIGN, BENIGN], [CANCER, CANCER, CANCER]]
    )
    kar = np.array([[0, 1, 2]], dtype=np.uint8)
    out = to_common_labels(kar, "karolinska")
    assert out.dtype == np.uint8 and out.shape == kar.shape
    np.testing.assert_array_equal(out, kar)
    assert to_common_labels(np.array([3], dtype=np.int64), " Radboud ").dtype == np.uint8
    assert label_names("radboud") == RADBOUD_LABELS
    assert label_names("karolinska") == KAROLINSKA_LABELS == COMMON_LABELS


def test_label_maps_reject_unknown_provider_and_labels():
    with pytest.raises(ManifestError, match="'tcga'"):
        to_common_labels(np.zeros((2, 2), np.uint8), "tcga")
    with pytest.raises(ManifestError, match="'tcga'"):
        label_names("tcga")
    with pytest.raises(ValueError, match=r"\[3, 4\].*karolinska"):
        to_common_labels(np.array([0, 3, 4, 2], np.uint8), "karolinska")
    with pytest.raises(ValueError, match=r"\[-1\]"):
        to_common_labels(np.array([-1, 2]), "radboud")
    empty = to_common_labels(np.zeros((0, 4), np.int32), "radboud")
    assert empty.shape == (0, 4) and empty.dtype == np.uint8
    with pytest.raises(ValueError, match="integers"):
        to_common_labels(np.zeros(3, np.float32), "radboud")


def test_decode_mask_rgb_takes_red_channel():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = np.arange(5) % 3
    rgb[..., 1] = 7  # G and B are ignored
    labels = decode_mask_rgb(rgb)
    assert labels.shape == (4, 5) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, rgb[..., 0])
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(decode_mask_rgb(rgba), labels)
    with pytest.raises(ValueError, match="shape"):
        decode_mask_rgb(np.zeros((4, 5), np.uint8))


def _write(path, text):
    path.write_text(text)
    return path


def test_read_train_csv_good_and_bad_rows(tmp_path):
    csv = _write(
        tmp_path / "train.csv",
        "image_id,data_provider,isup_grade,gleason_score,case_id\n"  # line 1
        "0005f7aaab2800f6170c399693a96917,karolinska,0,0+0,c1\n"  # 2
        f"{CONTRADICTION_ID},radboud,2,4+3,c2\n"  # 3
        "bad/id,radboud,1,3+3,c3\n"  # 4
        "\n"  # 5: blank lines are skipped but still counted
        "000920ad0b612851f8e01bcc880d9b3d,karolinska,7,3+3,c4\n"  # 6
        "0018ae58b01bdadc8e347995b69f99aa,tcga,1,3+3,c5\n"  # 7
        "001c62abd11fa4b57bf7a6c603a11bb9,Radboud,1,3+x,c6\n"  # 8
        "001d865e65ef5d2579c190a0e0350d8f,Radboud,1.0,3 + 3,c7\n"  # 9
        "0005f7aaab2800f6170c399693a96917,karolinska,0,0+0,c1\n"  # 10: duplicate
        "002a4db09dad406c85505a00fb6f6144,karolinska,two,0+0,c8\n",  # 11
    )
    frame, errors = read_train_csv(csv)
    assert list(frame["image_id"]) == ["0005f7aaab2800f6170c399693a96917", CONTRADICTION_ID, "001d865e65ef5d2579c190a0e0350d8f"]
    assert list(frame.columns) == ["image_id", "data_provider", "isup_grade", "gleason_score", "case_id", "row", "flags"]
    assert list(frame["row"]) == [2, 3, 9]
    assert frame["isup_grade"].dtype == np.int64
    last = frame.iloc[2]
    assert (last.data_provider, last.isup_grade, last.gleason_score) == ("radboud", 1, "3+3")
    flags = dict(zip(frame["image_id"], frame["flags"]))
    assert "contradicts" in flags[CONTRADICTION_ID] and "ISUP 3" in flags[CONTRADICTION_ID]
    assert flags["0005f7aaab2800f6170c399693a96917"] == ""
    reasons = {e.row: str(e) for e in errors}
    assert sorted(reasons) == [4, 6, 7, 8, 10, 11]
    assert "image_id" in reasons[4]
    assert "isup_grade" in reasons[6] and "'7'" in reasons[6]
    assert "data_provider" in reasons[7] and "'tcga'" in reasons[7]
    assert "gleason_score" in reasons[8] and "'3+x'" in reasons[8]
    assert "duplicate of row 2" in reasons[10]
    assert "'two'" in reasons[11]
    assert reasons[6].startswith("row 6 (000920ad0b612851f8e01bcc880d9b3d)")


def test_read_train_csv_file_level_errors(tmp_path):
    with pytest.raises(ManifestError, match=r"missing columns \['gleason_score'\].*'image_id'"):
        read_train_csv(_write(tmp_path / "a.csv", "image_id,data_provider,isup_grade\nx,radboud,0\n"))
    with pytest.raises(ManifestError, match="empty file"):
        read_train_csv(_write(tmp_path / "b.csv", ""))
    with pytest.raises(ManifestError, match="no such file"):
        read_train_csv(tmp_path / "missing.csv")
    with pytest.raises(ManifestError, match="row 2 has 5 cells"):
        read_train_csv(_write(tmp_path / "c.csv", "image_id,data_provider,isup_grade,gleason_score\na,radboud,0,negative,x\n"))


def test_read_train_csv_empty_table_keeps_columns(tmp_path):
    frame, errors = read_train_csv(_write(tmp_path / "t.csv", "image_id,data_provider,isup_grade,gleason_score\n"))
    assert frame.empty and errors == []
    assert "flags" in frame.columns
