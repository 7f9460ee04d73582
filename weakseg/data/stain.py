"""Optional stain normalisation of tiles to a reference fitted on the training tiles.

A learner with ``stain_norm`` set fits a reference once, on a fixed, evenly spaced sample of its
training tiles (:func:`fit_reference`); the reference is a plain dict kept in the learner's
``data_info_``, so it is saved with the model in the run directory and applied identically to
training batches (before augmentation) and at predict time (:func:`normalize`).

``reinhard``  Reinhard et al. 2001: each tile's CIE-Lab mean and standard deviation (over its
              non-glass pixels) are mapped to the reference's; batched (kornia colour conversions).
``macenko``   Macenko et al. 2009 via torchstain: each tile's H&E stain vectors and concentrations
              are re-expressed with the reference's stain matrix and maximum concentrations. A tile
              with too little stained tissue to estimate its stains is left as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import WeaksegError

METHODS = ("reinhard", "macenko")
#: a pixel whose darkest channel is at least this (of 1) counts as glass for the tile statistics
GLASS = 220 / 255
#: tiles sampled from the training data to fit the reference
N_REFERENCE_TILES = 64


def check_method(method: str | None) -> None:
    if method is not None and method not in METHODS:
        raise WeaksegError(f"stain_norm: unknown method {method!r}; choose from {list(METHODS)} or null")


def _lab_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image Lab mean and std over non-glass pixels: ``(B, 3)`` each (all pixels when a tile is glass)."""
    from kornia.color import rgb_to_lab

    lab = rgb_to_lab(x).flatten(2)  # (B, 3, HW)
    tissue = (x.min(dim=1).values < GLASS).flatten(1).float()  # (B, HW)
    tissue = torch.where(tissue.sum(1, keepdim=True) > 16, tissue, torch.ones_like(tissue))
    w = tissue / tissue.sum(1, keepdim=True)
    mean = (lab * w[:, None]).sum(-1)
    var = (((lab - mean[..., None]) ** 2) * w[:, None]).sum(-1)
    return mean, var.clamp(min=1e-6).sqrt()


def fit_reference(tiles: np.ndarray, method: str) -> dict[str, Any]:
    """The reference of ``method`` from uint8 tiles ``(N, T, T, 3)``: a JSON-able dict."""
    check_method(method)
    x = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2).float() / 255.0
    if method == "reinhard":
        mean, std = _lab_stats(x)
        return {"method": method, "mean": mean.mean(0).tolist(), "std": std.mean(0).tolist()}
    import torchstain

    MacenkoNormalizer = torchstain.normalizers.MacenkoNormalizer

    mosaic = np.concatenate(list(tiles), axis=1)  # tiles side by side: one reference image
    normalizer = MacenkoNormalizer(backend="torch")
    try:
        normalizer.fit(torch.from_numpy(np.ascontiguousarray(mosaic)).permute(2, 0, 1).float())
    except Exception as err:  # torchstain raises plain errors when stains cannot be estimated
        raise WeaksegError(f"stain_norm macenko: cannot estimate a reference from the training tiles ({err})") from err
    return {"method": method, "HERef": normalizer.HERef.tolist(), "maxCRef": normalizer.maxCRef.tolist()}


def normalize(x: torch.Tensor, reference: dict[str, Any] | None) -> torch.Tensor:
    """Float images ``(B, 3, H, W)`` in [0, 1] normalised to ``reference`` (unchanged when ``None``)."""
    if not reference or len(x) == 0:
        return x
    if reference["method"] == "reinhard":
        from kornia.color import lab_to_rgb, rgb_to_lab

        mean, std = _lab_stats(x)
        ref_mean = torch.tensor(reference["mean"], device=x.device).view(1, 3, 1, 1)
        ref_std = torch.tensor(reference["std"], device=x.device).view(1, 3, 1, 1)
        lab = (rgb_to_lab(x) - mean[..., None, None]) / std[..., None, None] * ref_std + ref_mean
        out = lab_to_rgb(lab).clamp(0.0, 1.0)
        glass = (x.min(dim=1, keepdim=True).values >= GLASS)
        return torch.where(glass, x, out)  # glass stays glass
    return _macenko(x, reference)


def _macenko(x: torch.Tensor, reference: dict[str, Any]) -> torch.Tensor:
    import torchstain

    MacenkoNormalizer = torchstain.normalizers.MacenkoNormalizer

    normalizer = MacenkoNormalizer(backend="torch")
    normalizer.HERef = torch.tensor(reference["HERef"])
    normalizer.maxCRef = torch.tensor(reference["maxCRef"])
    out = x.clone()
    for i, tile in enumerate(x.cpu()):
        try:
            norm, _, _ = normalizer.normalize(I=tile * 255.0, stains=False)
        except Exception:  # too little tissue to estimate this tile's stains: keep it as it is
            continue
        out[i] = (norm.float() / 255.0).permute(2, 0, 1).clamp(0.0, 1.0).to(x.device)
    return out


__all__ = ["METHODS", "check_method", "fit_reference", "normalize"]
