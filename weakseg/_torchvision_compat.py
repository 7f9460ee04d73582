"""Let torchvision's pure-Python parts import when its compiled ops cannot load.

The pinned ``torchvision==0.28.0`` wheel on PyPI is a CUDA build; beside the CPU build of
``torch==2.13.0`` its ``_C`` extension fails to load, and ``import torchvision`` then dies
registering fake kernels for ``torchvision::nms``/``qnms``. timm imports torchvision, so we
declare those two operator schemas (no kernels) before torchvision is imported. weakseg never
calls torchvision's compiled ops (NMS, RoI align); the rest of torchvision works unchanged.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIB = None


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Import hook: runs :func:`ensure_torchvision_importable` just before torchvision loads."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - importlib protocol
        if name == "torchvision":
            sys.meta_path.remove(self)
            ensure_torchvision_importable()
        return None


def install_hook() -> None:
    """Patch lazily: ``import weakseg`` stays cheap (no torch import) until torchvision is needed."""
    if "torchvision" in sys.modules or any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _BeforeTorchvision())


def ensure_torchvision_importable() -> None:
    """Declare missing ``torchvision::`` op schemas when the compiled extension is unusable."""
    global _LIB
    spec = importlib.util.find_spec("torchvision")
    if _LIB is not None or spec is None or not spec.submodule_search_locations:
        return
    import torch

    so = os.path.join(spec.submodule_search_locations[0], "_C.so")
    try:
        torch.ops.load_library(so)
        return
    except (OSError, RuntimeError):
        pass
    _LIB = torch.library.Library("torchvision", "DEF")  # kept alive: dropping it drops the schemas
    for schema in _SCHEMAS:
        _LIB.define(schema)
