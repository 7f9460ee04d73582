"""Image files of figures and overlays: the format follows the file's suffix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import WeaksegError

#: Suffix → format name (matplotlib's and Pillow's). Anything else is refused, never written as PNG bytes.
IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".webp": "webp"}
#: Vector formats matplotlib figures can also be saved as.
FIGURE_FORMATS = {**IMAGE_FORMATS, ".pdf": "pdf", ".svg": "svg"}


def image_format(path: str | os.PathLike, formats: dict[str, str] = IMAGE_FORMATS) -> str:
    """The format an image file of this name must have; a :class:`WeaksegError` for other suffixes."""
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        allowed = ", ".join(dict.fromkeys(formats))
        raise WeaksegError(f"{path}: cannot tell the image format from the suffix {suffix or '(none)'!r}; use one of {allowed}")
    return formats[suffix]


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically in the format its suffix names (PNG, JPEG, TIFF, WebP, PDF, SVG)."""
    fmt = image_format(path, FIGURE_FORMATS)
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return path


def save_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB / RGBA / grayscale uint8 array atomically in the format its suffix names."""
    from PIL import Image

    fmt = image_format(path)
    path = Path(path)
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if fmt == "jpeg" and img.mode == "RGBA":
        img = img.convert("RGB")
    with atomic_path(path, suffix=path.suffix) as tmp:
        img.save(tmp, format=fmt.upper(), **({"quality": 90} if fmt in ("jpeg", "webp") else {}))
    return path
