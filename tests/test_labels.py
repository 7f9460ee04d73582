"""weakseg.labels is the only module that defines label values; the old names still import."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import weakseg
from weakseg import labels

PACKAGE = Path(weakseg.__file__).resolve().parent

# Same names, other meanings (not label values).
NOT_LABEL_VALUES = {
    ("synth/scene.py", "BENIGN"): "a gland kind of the synthetic scene",
    ("annotate.py", "POSITIVE"): "the name of an annotation class",
    ("annotate.py", "NEGATIVE"): "the name of an annotation class",
}


def _assigned_names(tree: ast.AST):
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name) and isinstance(leaf.ctx, ast.Store):
                    yield leaf.id, node.lineno


def test_label_values_are_defined_only_in_weakseg_labels():
    names = set(labels.__all__) | {"_COMMON_THRESHOLDS", "_FULL_LUT"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "labels.py":
            continue
        for name, line in _assigned_names(ast.parse(path.read_text(encoding="utf-8"))):
            if name in names and (rel, name) not in NOT_LABEL_VALUES:
                found.append(f"weakseg/{rel}:{line}: {name}")
    assert not found, "label values defined outside weakseg/labels.py (import them from there):\n" + "\n".join(found)


def test_old_import_locations_are_the_same_objects():
    from weakseg import panda, weaken
    from weakseg.data import seg as data_seg
    from weakseg.metrics import seg as metrics_seg
    from weakseg.refine import policy

    for module, names in (
        (panda, ["BACKGROUND", "BENIGN", "CANCER", "COMMON_LABELS", "KAROLINSKA_LABELS", "PROVIDERS", "RADBOUD_LABELS"]),
        (weaken, ["CANCER", "PU_EXCLUDED", "PU_NEGATIVE", "PU_POSITIVE", "PU_UNLABELED"]),
        (policy, ["IGNORE", "NEGATIVE", "POSITIVE"]),
        (data_seg, ["IGNORE"]),
        (metrics_seg, ["BENIGN", "CANCER"]),
    ):
        for name in names:
            assert getattr(module, name) is getattr(labels, name), (module.__name__, name)


def test_values_are_unchanged():
    assert (labels.BACKGROUND, labels.BENIGN, labels.CANCER) == (0, 1, 2)
    assert (labels.POSITIVE, labels.NEGATIVE, labels.IGNORE) == (1, 0, 255)
    assert (labels.PU_POSITIVE, labels.PU_UNLABELED, labels.PU_EXCLUDED, labels.PU_NEGATIVE) == (1, 0, 255, 2)
    np.testing.assert_array_equal(labels.SEG_TARGET_BY_COMMON, [255, 0, 1])
    assert labels.COMMON_THRESHOLDS == {"radboud": (1, 3), "karolinska": (1, 2)}
