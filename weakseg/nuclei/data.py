"""Nuclear instance data: image/instance-mask folders, resolution change, incomplete annotations.

A nuclei folder holds ``images/<id>.png`` (RGB) and ``instances/<id>.png`` (integer instance
labels, 0 background), the layout of MoNuSeg-style datasets. :func:`drop_instances` simulates
incomplete annotations (the PU setting): a fraction of the instances is kept, the rest becomes
unlabeled. :func:`weaken_nuclei_folder` (``weakseg weaken --mode pu`` on a nuclei folder) writes
such a folder: ``instances/`` holds the kept nuclei, ``truth/`` links the complete masks (for
evaluation only) and ``weak.json`` records how it was made; loading it marks only the kept
nuclei as labelled.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WeaksegError
from ..metrics.instance import check_labels

IMAGE_DIR, INSTANCE_DIR, TRUTH_DIR, WEAK_FILE = "images", "instances", "truth", "weak.json"


def is_nuclei_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with ``images/`` and ``instances/`` (rather than tile bags)."""
    path = Path(path)
    return (path / IMAGE_DIR).is_dir() and (path / INSTANCE_DIR).is_dir()


@dataclass
class NucleiImage:
    """One image: ``rgb`` uint8 ``(H, W, 3)``, ``instances`` int32 ``(H, W)`` (0 background), and
    ``labelled`` (bool ``(H, W)`` or None): pixels whose label is known, for incomplete annotations."""

    id: str
    rgb: np.ndarray
    instances: np.ndarray
    labelled: np.ndarray | None = None


def load_nuclei_folder(root: str | os.PathLike, ids: list[str] | None = None) -> list[NucleiImage]:
    """Read ``root/images/*.png`` with their ``root/instances/*.png``; ``ids`` selects (sorted otherwise)."""
    from skimage.io import imread

    root = Path(root)
    images = root / IMAGE_DIR
    if not images.is_dir() or not (root / INSTANCE_DIR).is_dir():
        raise WeaksegError(f"{root}: not a nuclei folder (expected {IMAGE_DIR}/ and {INSTANCE_DIR}/ with PNG files)")
    names = sorted(p.stem for p in images.glob("*.png")) if ids is None else list(ids)
    if not names:
        raise WeaksegError(f"{images}: no PNG images")
    weak = (root / WEAK_FILE).is_file()  # incomplete annotations: only the listed nuclei are known
    out = []
    for name in names:
        image_path, mask_path = images / f"{name}.png", root / INSTANCE_DIR / f"{name}.png"
        if not image_path.is_file() or not mask_path.is_file():
            raise WeaksegError(f"{root}: image or instance mask of {name!r} missing")
        rgb = imread(image_path)
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise WeaksegError(f"{image_path}: expected an RGB image, got shape {rgb.shape}")
        inst = imread(mask_path)
        if inst.shape != rgb.shape[:2]:
            raise WeaksegError(f"{mask_path}: shape {inst.shape} differs from its image's {rgb.shape[:2]}")
        inst = check_labels(inst, str(mask_path)).astype(np.int32)
        out.append(NucleiImage(name, np.ascontiguousarray(rgb[..., :3]), inst, inst > 0 if weak else None))
    return out


def weaken_nuclei_folder(src: str | os.PathLike, out: str | os.PathLike, fraction: float, seed: int = 0) -> Path:
    """Incomplete-annotation copy of nuclei folder ``src``: a ``fraction`` of each image's nuclei kept
    (:func:`drop_instances`); images and the complete masks (``truth/``) are linked, not copied."""
    from PIL import Image

    from ..atomic import atomic_path, atomic_write_text

    src, out = Path(src).resolve(), Path(out)
    items = load_nuclei_folder(src)
    for sub in (IMAGE_DIR, INSTANCE_DIR, TRUTH_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for item in items:
        weak = drop_instances(item, fraction, seed=seed)
        for sub, target in ((IMAGE_DIR, src / IMAGE_DIR / f"{item.id}.png"), (TRUTH_DIR, src / INSTANCE_DIR / f"{item.id}.png")):
            link = out / sub / f"{item.id}.png"
            link.unlink(missing_ok=True)
            link.symlink_to(target)
        if weak.instances.max(initial=0) > np.iinfo(np.uint16).max:
            raise WeaksegError(f"{src / INSTANCE_DIR / item.id}.png: more than 65535 instance ids")
        with atomic_path(out / INSTANCE_DIR / f"{item.id}.png") as tmp:
            Image.fromarray(weak.instances.astype(np.uint16)).save(tmp, format="PNG")
    atomic_write_text(out / WEAK_FILE, json.dumps({"mode": "pu", "fraction": fraction, "seed": seed,
                                                   "source": str(src), "images": len(items)}, indent=2) + "\n")
    return out


def downsample_image(item: NucleiImage, factor: int) -> NucleiImage:
    """``factor``× smaller: RGB by block mean, labels by taking each block's centre pixel."""
    if factor == 1:
        return item
    h, w = (s // factor * factor for s in item.rgb.shape[:2])
    rgb = item.rgb[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).mean(axis=(1, 3))
    c = factor // 2
    labelled = None if item.labelled is None else item.labelled[c:h:factor, c:w:factor]
    return NucleiImage(item.id, np.round(rgb).astype(np.uint8), item.instances[c:h:factor, c:w:factor].copy(), labelled)


def drop_instances(item: NucleiImage, keep: float, seed: int = 0) -> NucleiImage:
    """Incomplete annotations: a random ``keep`` fraction of the instances stays labelled (ids kept),
    the others are removed from ``instances`` and their pixels join the unlabeled rest
    (``labelled`` is True on kept instances only: nothing is known about any other pixel)."""
    if not 0.0 < keep <= 1.0:
        raise WeaksegError(f"keep must be in (0, 1], got {keep}")
    ids = np.unique(item.instances)
    ids = ids[ids > 0]
    rng = np.random.default_rng([seed, zlib.crc32(item.id.encode())])  # not hash(): salted per process
    kept = rng.permutation(ids)[: int(round(keep * len(ids)))]
    instances = np.where(np.isin(item.instances, kept), item.instances, 0).astype(np.int32)
    return NucleiImage(item.id, item.rgb, instances, instances > 0)


__all__ = ["NucleiImage", "downsample_image", "drop_instances", "is_nuclei_folder", "load_nuclei_folder",
           "weaken_nuclei_folder"]
