"""HoVer-Net learners for nuclear instance segmentation: ``hovernet_seg`` (complete instance masks)
and ``hovernet_pu`` (incomplete annotations: only some nuclei labelled, the rest unlabeled).

Training data: a nuclei folder (``images/``, ``instances/``; :func:`weakseg.nuclei.data.load_nuclei_folder`)
or a list of :class:`~weakseg.nuclei.data.NucleiImage`. Images are reduced ``downsample``× first
(2: MoNuSeg's 0.25 µm/px → 0.5 µm/px). Each step draws ``batch_size`` random windows of the
backbone's ``in_size``, applies a random flip/90° rotation to image and instances together, then
computes the targets *after* the transform (NP = nucleus, HV by :func:`~weakseg.nuclei.hv_maps`,
as the official code does), then photometric augmentation (``augment``, flips excluded here).
Losses use only the window's centre ``out_size`` (see :mod:`weakseg.models.hovernet`):

* ``hovernet_seg``: NP cross-entropy + Dice; HV MSE + 2·MSGE (mean squared error of the Sobel
  gradients, inside nuclei), the paper's loss;
* ``hovernet_pu``: NP by the non-negative PU risk (Kiryo et al. 2017) on the NP margin, labelled
  nuclei positive and every other pixel unlabeled, with π = fraction of nuclear pixels among the
  unlabeled ones (``prior``; estimated when None, see :meth:`HoverNetPU._estimate_prior`); HV
  losses only inside labelled nuclei.

Inference: :meth:`predict_maps` slides the window over an image with the centre ``out_size``
kept (seamless), :meth:`predict_instances` adds :func:`~weakseg.nuclei.hv_instances` and returns
labels at the input resolution; :meth:`predict_tiles` (nuclear probability) makes slide maps.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..capabilities import InstanceSegmenterMixin
from ..data.augment import Augmenter, parse_augment
from ..engine.contract import StepOutput
from ..errors import WeaksegError
from ..losses import ce_dice_loss, nnPULoss
from ..metrics.instance import pooled_scores
from ..models import create_backbone
from ..models.hovernet import HV, NP, HoVerCfg
from ..nuclei.data import NucleiImage, downsample_image, load_nuclei_folder
from ..nuclei.hover import hv_instances, hv_maps, sobel_kernels
from .base import Interval, PixelPredictorMixin, TorchLearner, register_learner


def _as_images(X: Any, y: Any = None) -> list[NucleiImage]:
    """Images from a nuclei folder, a list of image paths inside nuclei folders (``<root>/images/<id>.png``,
    as ``weakseg train`` splits them), :class:`NucleiImage` objects, or RGB arrays with masks ``y``."""
    if isinstance(X, (str, os.PathLike)):
        if y is not None:
            raise WeaksegError("a nuclei folder carries its instance masks; pass y=None")
        return load_nuclei_folder(X)
    items = list(X)
    if items and isinstance(items[0], NucleiImage):
        return items
    if items and all(isinstance(i, (str, os.PathLike)) for i in items):
        if y is not None:
            raise WeaksegError("nuclei folders carry their instance masks; pass y=None")
        paths = [Path(i) for i in items]
        return [load_nuclei_folder(p.parent.parent, [p.stem])[0] for p in paths]
    if y is None or len(y) != len(items):
        raise WeaksegError("pass RGB images X with one instance mask each in y (or a nuclei folder)")
    return [NucleiImage(str(i), np.asarray(im, dtype=np.uint8), np.asarray(m).astype(np.int32))
            for i, (im, m) in enumerate(zip(items, y))]


def _hover_cfg(module: torch.nn.Module, name: str) -> HoVerCfg:
    cfg = getattr(module, "default_cfg", None)
    if not isinstance(cfg, HoVerCfg):
        raise WeaksegError(f"backbone {name!r} is not a HoVer-Net (no NP/HV branches); use a hovernet* backbone")
    return cfg


@functools.lru_cache(maxsize=8)
def _sobel_torch(ksize: int = 5, device: str = "cpu") -> torch.Tensor:
    """``(2, 1, k, k)`` kernels: d/dx and d/dy, normalised as in the official HoVer-Net loss."""
    smooth, deriv = sobel_kernels(ksize)
    kx = np.outer(smooth, deriv)
    kx = kx / (kx * np.arange(ksize)[None, :]).sum()  # a ramp rising 1 per pixel has derivative 1
    return torch.tensor(np.stack([kx, kx.T])[:, None], dtype=torch.float32, device=device)


class _Steps:
    """One epoch's batches, drawn lazily (one batch in memory at a time) from the epoch's generator."""

    def __init__(self, learner: HoverNetLearner, data: list[NucleiImage], rng: np.random.Generator, n: int) -> None:
        self.learner, self.data, self.rng, self.n = learner, data, rng, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return (self.learner._batch(self.data, self.rng) for _ in range(self.n))


class HoverNetLearner(InstanceSegmenterMixin, PixelPredictorMixin, TorchLearner):
    """Shared machinery of ``hovernet_seg`` and ``hovernet_pu`` (see the module doc)."""

    monitor: ClassVar[str] = "pq"
    monitor_mode: ClassVar[str] = "max"
    _parameter_constraints: ClassVar[dict[str, Interval]] = {
        "image_mpp": Interval(float, 0, 100, closed="right"),
        "downsample": Interval(int, 1, 16),
        "steps_per_epoch": Interval(int, 1, 10**6),
        "hv_weight": Interval(float, 0, 1e3),
        "msge_weight": Interval(float, 0, 1e3),
        "threshold": Interval(float, 0, 1, closed="neither"),
    }

    @property
    def model_mpp(self) -> float:
        """µm per pixel the model sees: the training images' ``image_mpp`` × ``downsample``."""
        return float(self.image_mpp) * int(self.downsample)

    # -- data ------------------------------------------------------------------------------
    def prepare_data(self, X: Any, y: Any = None) -> list[NucleiImage]:
        items = [downsample_image(it, self.downsample) for it in _as_images(X, y)]
        side = self._window_side()
        small = [it.id for it in items if min(it.rgb.shape[:2]) < side]
        if small:
            raise WeaksegError(f"images smaller than the {side}-px training window after downsample "
                               f"{self.downsample}: {small[:3]}")
        return items

    def data_info(self, data: list[NucleiImage]) -> dict[str, Any]:
        return {"n_images": len(data), "num_types": 0}

    def _window_side(self) -> int:
        """The backbone's training window (``in_size``), built once per backbone setting (not from a fitted
        ``module_``, which a later ``set_params(backbone=...)`` would make stale)."""
        key = (self.backbone, repr(self.backbone_params))
        if getattr(self, "_window", (None, 0))[0] != key:
            module = create_backbone(self.backbone, **(self.backbone_params or {}))
            self._window = (key, _hover_cfg(module, self.backbone).in_size)
        return self._window[1]

    def build_module(self, info: dict[str, Any]) -> torch.nn.Module:
        kw = dict(self.backbone_params or {})
        if self.pretrained_path is not None and not getattr(self, "_restoring", False):
            kw["pretrained_path"] = self.pretrained_path
        module = create_backbone(self.backbone, num_classes=0, **kw)
        _hover_cfg(module, self.backbone)
        return module

    def train_batches(self, data: list[NucleiImage], epoch: int, rng: np.random.Generator):
        """``steps_per_epoch`` batches of random windows; under DDP each rank makes its share of the steps
        from its own generator (different windows on every rank, the same number of steps in all)."""
        from ..engine.distributed import rank_generator, rank_share

        return _Steps(self, data, rank_generator(rng), len(rank_share(np.arange(self.steps_per_epoch))))

    def _batch(self, data: list[NucleiImage], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        side = self.module_.default_cfg.in_size
        images, inst, known = [], [], []
        for _ in range(self.batch_size):
            it = data[int(rng.integers(len(data)))]
            h, w = it.instances.shape
            r, c = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            view = [it.rgb[r:r + side, c:c + side], it.instances[r:r + side, c:c + side],
                    np.ones((side, side), bool) if it.labelled is None else it.labelled[r:r + side, c:c + side]]
            view = [np.rot90(v, k) for v in view]
            view = [np.ascontiguousarray(v[:, ::-1] if flip else v) for v in view]
            images.append(view[0]), inst.append(view[1]), known.append(view[2])
        hv = np.stack([hv_maps(m) for m in inst])  # targets after the geometric transform
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0).to(self.device_)
        x, _ = Augmenter.of(replace(parse_augment(self.augment), flips=False, elastic=0.0))(x, None, rng)
        return {"x": self.module_.default_cfg.normalise(x), "nuclear": torch.from_numpy(np.stack(inst) > 0).to(self.device_),
                "known": torch.from_numpy(np.stack(known)).to(self.device_), "hv": torch.from_numpy(hv).to(self.device_)}

    # -- losses ------------------------------------------------------------------------------
    def _centre(self, t: torch.Tensor) -> torch.Tensor:
        cfg = self.module_.default_cfg
        m = (cfg.in_size - cfg.out_size) // 2
        return t[..., m:cfg.in_size - m, m:cfg.in_size - m]

    def _hv_loss(self, pred: torch.Tensor, target: torch.Tensor, mse_focus: torch.Tensor | None,
                 msge_focus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MSE over ``mse_focus`` pixels (None: all) and MSGE (squared error of d/dx of H and d/dy of V)
        inside ``msge_focus``."""
        if mse_focus is None:
            mse = ((pred - target) ** 2).mean()
        else:
            f = mse_focus.unsqueeze(1).to(pred.dtype)
            mse = ((pred - target) ** 2 * f).sum() / (2 * f.sum().clamp(min=1.0))
        f = msge_focus.unsqueeze(1).to(pred.dtype)
        n = f.sum().clamp(min=1.0)
        kernels = _sobel_torch(5, str(pred.device))
        k = kernels.shape[-1] // 2

        def grads(t: torch.Tensor) -> torch.Tensor:
            gh = F.conv2d(t[:, :1], kernels[:1], padding=k)  # d/dx of H
            gv = F.conv2d(t[:, 1:], kernels[1:], padding=k)  # d/dy of V
            return torch.cat([gh, gv], dim=1)

        msge = ((grads(pred) - grads(target)) ** 2 * f).sum() / (2 * n)
        return mse, msge

    # -- inference -------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_maps(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nuclear probability ``(H, W)`` and HV maps ``(2, H, W)`` of one uint8 RGB image at the model's
        resolution (already downsampled), by windows whose centres tile the image."""
        self._check_fitted()
        module = self.module_
        was_training = module.training
        module.eval()
        cfg = module.default_cfg
        side, keep = cfg.in_size, cfg.out_size
        m = (side - keep) // 2
        h, w = rgb.shape[:2]
        ny, nx = -(-h // keep), -(-w // keep)
        pad = ((m, ny * keep - h + m), (m, nx * keep - w + m), (0, 0))
        big = np.pad(rgb, pad, mode="reflect")
        out = np.zeros((3, ny * keep, nx * keep), dtype=np.float32)
        corners = [(i * keep, j * keep) for i in range(ny) for j in range(nx)]
        try:
            for lo in range(0, len(corners), self.batch_size):
                chunk = corners[lo:lo + self.batch_size]
                x = np.stack([big[r:r + side, c:c + side] for r, c in chunk])
                x = torch.from_numpy(x).to(self.device_).permute(0, 3, 1, 2).float().div_(255.0)
                y = module(self.module_.default_cfg.normalise(x)).float()
                prob = self._nuclear_prob(y[:, NP])
                maps = torch.cat([prob[:, None], y[:, HV]], dim=1)[..., m:m + keep, m:m + keep].cpu().numpy()
                for (r, c), tile in zip(chunk, maps):
                    out[:, r:r + keep, c:c + keep] = tile
        finally:
            module.train(was_training)
        return out[0, :h, :w], out[1:, :h, :w]

    def _nuclear_prob(self, np_logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(np_logits, dim=1)[:, 1]

    def _post(self, prob: np.ndarray, hv: np.ndarray) -> np.ndarray:
        d = self.downsample
        return hv_instances(prob, hv, threshold=self.threshold, ksize=max(3, (21 // d) | 1),
                            min_marker_size=max(2, 10 // (d * d)), min_size=max(2, 10 // (d * d)))

    def predict_instances(self, X: Any) -> list[np.ndarray]:
        """Instance labels (int32) of each image of ``X`` (RGB arrays, :class:`NucleiImage` or a nuclei
        folder) at the image's own resolution."""
        if isinstance(X, (str, os.PathLike)):
            X = load_nuclei_folder(X)
        out = []
        for item in X:
            rgb = item.rgb if isinstance(item, NucleiImage) else np.asarray(item, dtype=np.uint8)
            small = downsample_image(NucleiImage("", rgb, np.zeros(rgb.shape[:2], np.int32)), self.downsample).rgb
            labels = self._post(*self.predict_maps(small))
            if self.downsample > 1:
                labels = np.repeat(np.repeat(labels, self.downsample, 0), self.downsample, 1)
                labels = np.pad(labels, ((0, rgb.shape[0] - labels.shape[0]), (0, rgb.shape[1] - labels.shape[1])), mode="edge")
            out.append(labels.astype(np.int32))
        return out

    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """Nuclear probability per pixel of uint8 ``(B, T, T, 3)`` tiles already at the model's µm/px."""
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
            raise WeaksegError(f"predict_tiles expects uint8 (B, T, T, 3) tiles, got {tiles.dtype} {tiles.shape}")
        return np.stack([self.predict_maps(t)[0] for t in tiles]) if len(tiles) else np.zeros(tiles.shape[:3], np.float32)

    def instance_scores(self, bag: Any) -> np.ndarray:
        """Fraction of nuclear pixels of each tile of ``bag``."""
        from ..bags import Bag

        bag = bag if isinstance(bag, Bag) else Bag(bag)
        return np.concatenate([(self.predict_tiles(t) >= self.threshold).mean(axis=(1, 2))
                               for _, t in bag.iter_tiles(self.batch_size)])

    def predict_proba(self, X: Any) -> np.ndarray:
        raise WeaksegError(f"{type(self).__name__} segments nuclei: use predict_instances / predict_tiles")

    def evaluate(self, data: list[NucleiImage]) -> dict[str, float]:
        """Pooled instance scores (``pq``, ``aji``, ``dice``, ...) on the validation images at model resolution."""
        return pooled_scores((item.instances, self._post(*self.predict_maps(item.rgb))) for item in data)


@register_learner("hovernet_seg")
class HoverNetSeg(HoverNetLearner):
    """HoVer-Net on complete instance masks (supervision ``full``); see :mod:`weakseg.learners.nuclei`.

    Args:
        backbone, backbone_params, pretrained_path: a registered ``hovernet*`` backbone, its keyword
            arguments and a local encoder checkpoint.
        image_mpp: µm per pixel of the training images (MoNuSeg, 40x: 0.25); with ``downsample`` it
            sets the µm/px slides are read at (:attr:`model_mpp`).
        downsample: images are reduced this many times before anything (2: 0.25 → 0.5 µm/px).
        steps_per_epoch, batch_size: random windows per step and steps per epoch.
        augment: photometric augmentation (a preset or mapping as for the segmentation learners;
            flips/rotations are always applied, before the targets are computed).
        hv_weight, msge_weight: weights of the HV MSE and MSGE terms (paper: 1 and 2).
        threshold: NP probability threshold of the post-processing.
    """

    supervision = "full"

    def __init__(
        self, *, backbone: str = "hovernet_cpu", backbone_params: dict | None = None, pretrained_path: str | None = None,
        image_mpp: float = 0.25, downsample: int = 2, steps_per_epoch: int = 50, batch_size: int = 8,
        augment: bool | str | dict = "he",
        hv_weight: float = 1.0, msge_weight: float = 2.0, threshold: float = 0.5,
        max_epochs: int = 20, optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 1e-5,
        momentum: float = 0.9, scheduler: str = "cosine", scheduler_params: dict | None = None,
        grad_clip: float | None = None, patience: int | None = None, min_epochs: int = 0, device: str = "auto",
        amp: bool | str = "auto", amp_dtype: str = "auto", channels_last: bool = False,
        torch_compile: bool | str = False, sync_bn: bool = False, deterministic: bool = False, random_state: int = 0,
    ) -> None:
        self._store_params(locals())

    def training_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        y = self._centre(self.module_(batch["x"]))
        nuclear = self._centre(batch["nuclear"])
        np_loss = ce_dice_loss(y[:, NP], nuclear.long(), ce_weight=0.5)
        mse, msge = self._hv_loss(y[:, HV], self._centre(batch["hv"]), None, nuclear)
        loss = np_loss + self.hv_weight * mse + self.msge_weight * msge
        return StepOutput(loss, logs={"np": float(np_loss.detach()), "hv_mse": float(mse.detach()),
                                      "hv_msge": float(msge.detach())})


@register_learner("hovernet_pu")
class HoverNetPU(HoverNetLearner):
    """HoVer-Net from incomplete nucleus annotations (supervision ``pu``): NP by the nnPU risk,
    HV inside labelled nuclei only. Parameters as :class:`HoverNetSeg`, plus:

    Args:
        prior: π, fraction of nuclear pixels among the *unlabeled* pixels. ``None``: estimated from
            the training images (:meth:`_estimate_prior`), recorded in ``prior_``.
        beta, gamma, loss, nnpu: Kiryo et al.'s β, γ, surrogate and nnPU (False: uPU).
    """

    supervision = "pu"
    _parameter_constraints: ClassVar[dict[str, Interval]] = {"prior": Interval(float, 0, 1, closed="neither", none=True)}

    def __init__(
        self, *, prior: float | None = None, beta: float = 0.0, gamma: float = 1.0, loss: str = "sigmoid", nnpu: bool = True,
        backbone: str = "hovernet_cpu", backbone_params: dict | None = None, pretrained_path: str | None = None,
        image_mpp: float = 0.25, downsample: int = 2, steps_per_epoch: int = 50, batch_size: int = 8,
        augment: bool | str | dict = "he",
        hv_weight: float = 1.0, msge_weight: float = 2.0, threshold: float = 0.5,
        max_epochs: int = 20, optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 1e-5,
        momentum: float = 0.9, scheduler: str = "cosine", scheduler_params: dict | None = None,
        grad_clip: float | None = None, patience: int | None = None, min_epochs: int = 0, device: str = "auto",
        amp: bool | str = "auto", amp_dtype: str = "auto", channels_last: bool = False,
        torch_compile: bool | str = False, sync_bn: bool = False, deterministic: bool = False, random_state: int = 0,
    ) -> None:
        self._store_params(locals())

    def data_info(self, data: list[NucleiImage]) -> dict[str, Any]:
        prior, method = (float(self.prior), "given") if self.prior is not None else (self._estimate_prior(data), "hematoxylin")
        return {**super().data_info(data), "prior": prior, "prior_method": method}

    def bind_module(self, module: Any, device: Any, info: dict[str, Any]) -> None:
        super().bind_module(module, device, info)
        self.prior_ = info["prior"]
        self._risk = nnPULoss(info["prior"], beta=self.beta, gamma=self.gamma, loss=self.loss, nnpu=self.nnpu)

    @staticmethod
    def _estimate_prior(data: Sequence[NucleiImage]) -> float:
        """π from the stain: the fraction of unlabeled pixels that the classical hematoxylin
        segmentation (:func:`weakseg.nuclei.classical_nuclei`) calls nuclear, clipped to [0.01, 0.99]."""
        from ..nuclei.classical import classical_nuclei

        hit = total = 0
        for it in data:
            unl = ~it.labelled if it.labelled is not None else it.instances == 0
            fg = classical_nuclei(it.rgb, min_distance=3, min_size=8) > 0
            hit, total = hit + int((fg & unl).sum()), total + int(unl.sum())
        return float(np.clip(hit / max(total, 1), 0.01, 0.99))

    def training_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        y = self._centre(self.module_(batch["x"]))
        known = self._centre(batch["known"]) & self._centre(batch["nuclear"])
        margin = y[:, 1] - y[:, 0]
        step = self._risk(margin, known.long())
        mse, msge = self._hv_loss(y[:, HV], self._centre(batch["hv"]), known, known)
        loss = step.objective + self.hv_weight * mse + self.msge_weight * msge
        return StepOutput(loss, lr_scale=step.lr_scale, logs={"np_risk": float(step.objective.detach()),
                                                               "hv_mse": float(mse.detach()), "hv_msge": float(msge.detach())})

    def _nuclear_prob(self, np_logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(np_logits[:, 1] - np_logits[:, 0])

    def _restore_fitted_state(self, state: dict[str, Any]) -> None:
        super()._restore_fitted_state(state)
        self.prior_ = self.data_info_["prior"]


__all__ = ["HoverNetLearner", "HoverNetPU", "HoverNetSeg"]
