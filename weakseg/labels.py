"""Every label value weakseg reads or writes, in one place.

Three families of values, all stored as uint8:

* **PANDA masks** (raw, per provider, red channel of the mask TIFF): :data:`RADBOUD_LABELS` and
  :data:`KAROLINSKA_LABELS`. Both map monotonically onto the **common labels**
  :data:`BACKGROUND` 0, :data:`BENIGN` 1, :data:`CANCER` 2 (:func:`weakseg.panda.to_common_labels`):
  the common label is the number of :data:`COMMON_THRESHOLDS` the raw value reaches.
* **Weak PU labels** (``pu_labels`` of a weak bag, :mod:`weakseg.weaken`): :data:`PU_POSITIVE`
  1 (annotated cancer), :data:`PU_UNLABELED` 0 (other tissue), :data:`PU_EXCLUDED` 255
  (background), :data:`PU_NEGATIVE` 2 (annotated negative tissue, ``weakseg annotate
  --negatives`` only).
* **Segmentation targets** (``pseudo_labels`` of the refinement rounds, targets of the seg
  learners): :data:`POSITIVE` 1 (cancer), :data:`NEGATIVE` 0 (benign), :data:`IGNORE` 255 (no
  loss); :data:`SEG_TARGET_BY_COMMON` maps common labels to full-supervision targets.
"""

from __future__ import annotations

import numpy as np

#: PANDA data providers (``train.csv``'s ``data_provider``).
PROVIDERS = ("radboud", "karolinska")
#: Raw Radboud mask values.
RADBOUD_LABELS = {
    0: "background",
    1: "stroma",
    2: "benign epithelium",
    3: "gleason 3",
    4: "gleason 4",
    5: "gleason 5",
}
#: Raw Karolinska mask values.
KAROLINSKA_LABELS = {0: "background", 1: "benign tissue", 2: "cancer"}
#: Common labels of both providers.
COMMON_LABELS = {0: "background", 1: "benign tissue", 2: "cancer"}
BACKGROUND, BENIGN, CANCER = 0, 1, 2
#: Raw value at which each provider's mask reaches common label 1 and 2.
COMMON_THRESHOLDS = {"radboud": (1, 3), "karolinska": (1, 2)}

#: Segmentation targets: positive (cancer), negative (benign), ignored (no loss).
POSITIVE, NEGATIVE, IGNORE = 1, 0, 255
#: Full-supervision target of each common label: background ignored, benign 0, cancer 1.
SEG_TARGET_BY_COMMON = np.array([IGNORE, NEGATIVE, POSITIVE], dtype=np.uint8)

#: Weak PU labels: annotated cancer, other tissue, background (not a target).
PU_POSITIVE, PU_UNLABELED, PU_EXCLUDED = 1, 0, IGNORE
#: Annotated negative tissue (``weakseg annotate --negatives`` only; ``weaken`` never writes it).
PU_NEGATIVE = 2

__all__ = [
    "BACKGROUND",
    "BENIGN",
    "CANCER",
    "COMMON_LABELS",
    "COMMON_THRESHOLDS",
    "IGNORE",
    "KAROLINSKA_LABELS",
    "NEGATIVE",
    "POSITIVE",
    "PROVIDERS",
    "PU_EXCLUDED",
    "PU_NEGATIVE",
    "PU_POSITIVE",
    "PU_UNLABELED",
    "RADBOUD_LABELS",
    "SEG_TARGET_BY_COMMON",
]
