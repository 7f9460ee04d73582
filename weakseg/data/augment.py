"""Training-time augmentation of tiles and their pixel labels (never applied by ``evaluate`` / ``predict``).

One specification, :class:`AugmentSpec`, used by every learner's ``augment`` parameter; in a
recipe it is ``true`` (flips and 90° rotations only, the old behaviour), ``false``, a preset
name (:data:`PRESETS`: ``none``, ``flips``, ``he``, ``strong``) or a mapping of fields, optionally
over a preset: ``augment: {preset: he, elastic: 0.2}``. An unknown key is an error naming it.

Transforms (the seeds' list), in this order, each drawn independently per tile:

* **flips and 90° rotations** (D4), applied identically to labels;
* **elastic deformation** (probability ``elastic``; kornia's displacement-field warp, bilinear
  for pixels and nearest for labels, so label codes such as 255 stay exact);
* **HED stain jitter** (``hed``: per-tile multiplicative ``1 + N(0, hed)`` and additive
  ``N(0, hed)`` perturbation of the haematoxylin/eosin/DAB optical densities, Tellez et al. 2018,
  with scikit-image's ``hed_from_rgb`` colour deconvolution matrix);
* **brightness/contrast/saturation/hue** (kornia ``ColorJitter``);
* **Gaussian blur** (probability ``blur``, σ ∈ [0.1, 1.5]) and **median blur** (probability
  ``median``, 3×3) (kornia);
* **Gaussian noise** (``noise``: its standard deviation on [0, 1] intensities, probability 0.5).

Pixel transforms never touch the labels. Randomness comes from the caller's NumPy generator
(the trainer's per-epoch generator), so runs stay reproducible.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from ..errors import WeaksegError


@dataclass(frozen=True)
class AugmentSpec:
    """What :class:`Augmenter` does (see the module doc); all zeros/False is the identity."""

    flips: bool = False
    elastic: float = 0.0
    elastic_alpha: float = 1.0
    elastic_sigma: float = 8.0
    hed: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    blur: float = 0.0
    median: float = 0.0
    noise: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self == AugmentSpec()


PRESETS: dict[str, AugmentSpec] = {
    "none": AugmentSpec(),
    "flips": AugmentSpec(flips=True),
    "he": AugmentSpec(flips=True, hed=0.03, brightness=0.1, contrast=0.1, saturation=0.1, hue=0.03,
                      blur=0.1, median=0.05, noise=0.02),
    "strong": AugmentSpec(flips=True, elastic=0.3, hed=0.05, brightness=0.2, contrast=0.2, saturation=0.2,
                          hue=0.05, blur=0.2, median=0.1, noise=0.03),
}


def parse_augment(value: Any) -> AugmentSpec:
    """An :class:`AugmentSpec` from a learner's ``augment`` parameter (bool, preset name, mapping, spec)."""
    if isinstance(value, AugmentSpec):
        return value
    if value is None or value is False:
        return PRESETS["none"]
    if value is True:
        return PRESETS["flips"]
    if isinstance(value, str):
        if value not in PRESETS:
            raise WeaksegError(f"augment: unknown preset {value!r}; choose from {sorted(PRESETS)}")
        return PRESETS[value]
    if isinstance(value, dict):
        items = dict(value)
        base = parse_augment(items.pop("preset", "none"))
        valid = {f.name: f.type for f in fields(AugmentSpec)}
        unknown = sorted(set(items) - set(valid))
        if unknown:
            raise WeaksegError(f"augment: unknown key(s) {unknown}; valid keys: preset, {', '.join(valid)}")
        clean: dict[str, Any] = {}
        for key, v in items.items():
            if key == "flips":
                if not isinstance(v, bool):
                    raise WeaksegError(f"augment.flips: expected true/false, got {v!r}")
                clean[key] = v
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise WeaksegError(f"augment.{key}: expected a non-negative number, got {v!r}")
            if key in ("elastic", "blur", "median") and v > 1:
                raise WeaksegError(f"augment.{key} is a probability in [0, 1], got {v!r}")
            clean[key] = float(v)
        return replace(base, **clean)
    raise WeaksegError(f"augment: expected true/false, a preset name or a mapping, got {value!r}")


# -- the transforms ----------------------------------------------------------------------------
def dihedral(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random element of the dihedral group D4 (flips and 90° rotations) per image of ``(n, C, H, W)``.

    Orientation carries no meaning in histology, so every tile gets an independent draw.
    Non-square images only get flips.
    """
    out, _ = dihedral_pair(x, None, generator)
    return out


def dihedral_pair(x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`dihedral` applied identically to images ``(n, C, H, W)`` and labels ``(n, H, W)``."""
    n = x.shape[0]
    if n == 0:
        return x, y
    draws = torch.rand((3, n), generator=generator, device="cpu").lt(0.5).to(x.device)
    square = x.shape[-1] == x.shape[-2]

    def apply(t: torch.Tensor, view: tuple[int, ...]) -> torch.Tensor:
        d = draws.view(3, n, *view)
        t = torch.where(d[0], t.flip(-1), t)
        t = torch.where(d[1], t.flip(-2), t)
        if square:
            t = torch.where(d[2], t.transpose(-1, -2), t)
        return t

    return apply(x, (1, 1, 1)), (apply(y, (1, 1)) if y is not None else None)


@functools.lru_cache(maxsize=1)
def _hed_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    from skimage.color import hed_from_rgb, rgb_from_hed

    return torch.as_tensor(hed_from_rgb, dtype=torch.float32), torch.as_tensor(rgb_from_hed, dtype=torch.float32)


def hed_jitter(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Perturb each tile's H, E and DAB optical densities: ``od' = od·(1+α) + β``, α, β ~ N(0, σ)."""
    to_hed, to_rgb = _hed_matrices()
    to_hed, to_rgb = to_hed.to(x.device), to_rgb.to(x.device)
    n = x.shape[0]
    od = -torch.log(x.clamp(min=1e-6, max=1.0)).permute(0, 2, 3, 1)  # (n, H, W, 3) optical density
    hed = od @ to_hed
    alpha = torch.randn((n, 1, 1, 3), generator=generator).to(x.device) * sigma
    beta = torch.randn((n, 1, 1, 3), generator=generator).to(x.device) * sigma
    rgb = torch.exp(-((hed * (1 + alpha) + beta) @ to_rgb))
    return rgb.clamp(0.0, 1.0).permute(0, 3, 1, 2).contiguous()


class Augmenter:
    """Applies an :class:`AugmentSpec` to a batch: images float ``(B, 3, H, W)`` in [0, 1], labels ``(B, H, W)``."""

    def __init__(self, spec: Any) -> None:
        self.spec = parse_augment(spec)
        self._pixel = self._pixel_pipeline(self.spec)

    @staticmethod
    def _pixel_pipeline(spec: AugmentSpec) -> torch.nn.Module | None:
        import kornia.augmentation as K

        ops: list[torch.nn.Module] = []
        if spec.brightness or spec.contrast or spec.saturation or spec.hue:
            ops.append(K.ColorJitter(brightness=spec.brightness, contrast=spec.contrast, saturation=spec.saturation,
                                     hue=spec.hue, p=1.0))
        if spec.blur:
            ops.append(K.RandomGaussianBlur((5, 5), (0.1, 1.5), p=spec.blur))
        if spec.median:
            ops.append(K.RandomMedianBlur((3, 3), p=spec.median))
        if spec.noise:
            ops.append(K.RandomGaussianNoise(mean=0.0, std=spec.noise, p=0.5))
        return torch.nn.Sequential(*ops) if ops else None

    @staticmethod
    def of(value: Any) -> Augmenter:
        """The (cached) augmenter of an ``augment`` parameter value."""
        return _cached(parse_augment(value))

    def __repr__(self) -> str:
        return f"Augmenter({self.spec})"

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, rng: np.random.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augmented ``(images, labels)``; ``rng`` (default: a seed drawn from torch's global generator)."""
        spec = self.spec
        if spec.is_identity or len(images) == 0:
            return images, labels
        seed = int(rng.integers(2**62)) if rng is not None else int(torch.randint(2**62, (1,)))
        gen = torch.Generator().manual_seed(seed)
        if spec.flips:
            images, labels = dihedral_pair(images, labels, gen)
        if spec.elastic:
            images, labels = self._elastic(images, labels, gen)
        if spec.hed:
            images = hed_jitter(images, spec.hed, gen)
        if self._pixel is not None:
            with torch.random.fork_rng(devices=[]):  # kornia draws from the global generator
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
                images = self._pixel(images).clamp(0.0, 1.0)
        return images, labels

    def _elastic(self, images: torch.Tensor, labels: torch.Tensor | None, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        from kornia.geometry.transform import elastic_transform2d

        spec = self.spec
        chosen = torch.rand(len(images), generator=gen) < spec.elastic
        if not chosen.any():
            return images, labels
        idx = chosen.nonzero().squeeze(1).to(images.device)
        h, w = images.shape[-2:]
        noise = (torch.rand((len(idx), 2, h, w), generator=gen) * 2 - 1).to(images.device)
        k = int(4 * spec.elastic_sigma) | 1
        kw = dict(kernel_size=(k, k), sigma=(spec.elastic_sigma, spec.elastic_sigma),
                  alpha=(spec.elastic_alpha, spec.elastic_alpha), padding_mode="reflection")
        images = images.clone()
        images[idx] = elastic_transform2d(images[idx], noise, mode="bilinear", **kw)
        if labels is not None:
            labels = labels.clone()
            warped = elastic_transform2d(labels[idx].unsqueeze(1).float(), noise, mode="nearest", **kw)
            labels[idx] = warped.squeeze(1).round().to(labels.dtype)
        return images, labels


@functools.lru_cache(maxsize=32)
def _cached(spec: AugmentSpec) -> Augmenter:
    return Augmenter(spec)


__all__ = ["PRESETS", "AugmentSpec", "Augmenter", "dihedral", "dihedral_pair", "hed_jitter", "parse_augment"]
