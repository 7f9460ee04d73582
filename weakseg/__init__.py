"""weakseg: weakly-supervised segmentation of PANDA-style whole-slide images.

The top level is a curated, lazy API (PEP 562): ``import weakseg`` imports no heavy library
(torch, timm, openslide, h5py, pandas, …); each name below imports its module the first time
it is used, so ``weakseg.train(...)`` works without importing ``weakseg.api`` first.

Registries   ``create_learner``, ``list_learners``, ``register_learner``, ``create_backbone``,
             ``list_backbones``, ``create_encoder``, ``list_encoders``
Stages       ``tile_cohort``, ``weaken_bags``, ``annotate_bags``, ``train``, ``predict``,
             ``evaluate``, ``load_run``, ``run_study``
Data         ``Bag`` (a tile bag), ``Resolution`` (tile size and µm/px of bags)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._torchvision_compat import install_hook

# name -> module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "create_learner": "weakseg.learners",  # the package, so the built-in learners are registered
    "list_learners": "weakseg.learners",
    "register_learner": "weakseg.learners",
    "create_backbone": "weakseg.models",  # likewise for the built-in backbones
    "list_backbones": "weakseg.models",
    "create_encoder": "weakseg.encoders",
    "list_encoders": "weakseg.encoders",
    "tile_cohort": "weakseg.tiling",
    "weaken_bags": "weakseg.weaken",
    "annotate_bags": "weakseg.annotate",
    "train": "weakseg.api",
    "predict": "weakseg.api",
    "evaluate": "weakseg.api",
    "load_run": "weakseg.api",
    "run_study": "weakseg.study",
    "Bag": "weakseg.bags",
    "Resolution": "weakseg.resolution",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # static analysers and IDEs see the real objects
    from .annotate import annotate_bags
    from .api import evaluate, load_run, predict, train
    from .bags import Bag
    from .encoders import create_encoder, list_encoders
    from .learners import create_learner, list_learners, register_learner
    from .models import create_backbone, list_backbones
    from .resolution import Resolution
    from .study import run_study
    from .tiling import tile_cohort
    from .weaken import weaken_bags

    __version__: str

# Declares torchvision's missing op schemas just before torchvision (hence timm) is first imported.
install_hook()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("weakseg")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'weakseg' has no attribute {name!r}")
    globals()[name] = value  # later lookups are plain attribute reads
    return value


_PRIVATE = {"annotations", "importlib", "TYPE_CHECKING", "Any", "install_hook"}


def __dir__() -> list[str]:
    # the public names, dunders and the submodules imported so far (not this module's helpers)
    return sorted((set(globals()) - _PRIVATE) | set(__all__))
