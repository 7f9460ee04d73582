"""Every weakseg exception is defined in weakseg.errors; the modules that raised them still export them."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import weakseg
from weakseg import errors

PACKAGE = Path(weakseg.__file__).resolve().parent

#: none left: every exception class lives in errors.py
NOT_YET_MOVED: dict[str, set[str]] = {}


def _exception_classes(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
            if any(b.endswith(("Error", "Exception")) for b in bases):  # not RowError, a record
                out.add(node.name)
    return out


def test_exceptions_are_defined_in_errors_py():
    stray = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "errors.py":
            continue
        found = _exception_classes(ast.parse(path.read_text(encoding="utf-8"))) - NOT_YET_MOVED.get(rel, set())
        stray += [f"weakseg/{rel}: {name}" for name in sorted(found)]
    assert not stray, "exceptions defined outside weakseg/errors.py:\n" + "\n".join(stray)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("weakseg.annotate", "AnnotationError"),
        ("weakseg.tiling.tiler", "OutputError"),
        ("weakseg.encoders", "EncoderWeightsError"),
        ("weakseg.cli.common", "OutputPathError"),
        ("weakseg.synth.cohort", "SynthConfigError"),
    ],
)
def test_moved_exceptions_import_from_their_old_module(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name) and issubclass(cls, errors.WeaksegError)


def test_a_damaged_tile_is_located_by_bag_and_row(tmp_path, make_bag):
    import h5py
    import numpy as np

    from weakseg.bags import Bag

    tiles = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    path = make_bag(tmp_path / "b.h5", tiles, codec="jpeg")
    with h5py.File(path, "r+") as f:
        f["tiles"][3] = np.frombuffer(b"\xff\xd8\xff\xe0 broken jpeg " * 4, dtype=np.uint8)
    with Bag(path) as bag, pytest.raises(Exception) as info:
        bag.read_tiles([5, 3, 0])
    assert errors.locate_tile(info.value) == (str(path), 3)
    text, row = errors.describe_failure(info.value)
    assert row == 3 and text.startswith("tile 3: ")
    assert errors.locate_tile(ValueError("not from a bag")) is None
