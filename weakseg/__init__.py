"""weakseg: weakly-supervised segmentation of PANDA-style whole-slide images."""

from importlib.metadata import PackageNotFoundError, version

from ._torchvision_compat import install_hook

try:
    __version__ = version("weakseg")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

install_hook()

__all__ = ["__version__"]
