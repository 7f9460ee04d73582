"""Segmentation learners on pixel-labelled tiles: ``nnpu_seg`` (PU) and ``supervised_seg`` (full).

Both train any registered backbone (:mod:`weakseg.models`) on every tile of the training bags,
with random flips / 90° rotations (training only) and the backbone's input normalisation
(ImageNet mean/std for the built-in ones), and predict per-pixel cancer probabilities.

``nnpu_seg``        one logit per pixel, :class:`~weakseg.losses.nnPULoss` on the weak bags'
                    ``pu_labels`` (positives: annotated cancer; unlabeled: other tissue;
                    background excluded). Batches come from
                    :class:`~weakseg.sampling.PositiveBatchSampler`. Validation monitors the PU
                    estimate of the 0-1 risk, 2π·FNR_P + FPR_U − π, which needs no negatives.
``supervised_seg``  two classes (benign tissue, cancer; background ignored), 0.5 CE + 0.5 Dice
                    on the ground-truth masks: the fully supervised upper bound. Validation
                    monitors the cancer Dice. On :mod:`weakseg.refine` label bags it trains on
                    their ``pseudo_labels`` instead (how ``mil_seg`` uses it).

Slide-level outputs for the :class:`~weakseg.learners.base.Learner` API: a tile's score is its
mean cancer probability; a slide's probability is its highest tile score.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..bags import Bag
from ..data.augment import Augmenter
from ..data.stain import N_REFERENCE_TILES, check_method, fit_reference
from ..data.stain import normalize as normalize_stain
from ..data.seg import IGNORE, SegTileDataset, collate_read, random_crop
from ..data.sources import resolve_bag_paths
from ..errors import WeaksegError
from ..losses import bbe_prior, ce_dice_loss, estimate_bag_prior, negative_slide_prior, nnPULoss, surrogate_loss
from ..metrics.seg import SlideCounts, SlideTruth, slide_counts
from ..models import create_backbone
from ..sampling import PositiveBatchSampler
from ..weaken import PU_POSITIVE, PU_UNLABELED
from ..engine.contract import StepOutput
from ..engine.optim import encoder_names, encoder_parameters, param_groups
from ..engine.distributed import rank_generator, rank_share
from .base import Interval, PixelPredictorMixin, TorchLearner, register_learner


class SegLearner(PixelPredictorMixin, TorchLearner):
    """Shared machinery: data, backbone, batches, tiled inference, slide-level outputs.

    Subclasses set ``target`` (``"pu"`` | ``"full"``), ``n_outputs`` and implement
    :meth:`training_step`, :meth:`_probabilities` and :meth:`_val_metrics`.

    Fine-tuning (seed 001, for every segmentation learner):

    * ``freeze_encoder_epochs`` k: epochs ``0 … k-1`` train the decoder only; the encoder
      (:func:`weakseg.engine.optim.encoder_parameters`: ``encoder`` of U-Net/HRNet/HoVer-Net,
      ``cnn``/``patch_embed``/``pos_embed``/``blocks``/``norm`` of TransUNet) gets no gradient
      (``requires_grad`` off, so no optimiser step, momentum or weight decay touches it) and its
      normalisation layers keep their running statistics (eval mode); from epoch k on it trains.
    * ``encoder_lr_mult``: the encoder's learning rate is ``lr × encoder_lr_mult`` (discriminative
      learning rates; :meth:`param_groups`, from which the trainer builds its optimiser; the schedule
      scales both groups alike).
    * Ignored pixels: background (tissue-free) pixels, and pixels outside the slide, are
      :data:`~weakseg.labels.IGNORE` (255) in the targets (PU: ``PU_EXCLUDED``) and count in no loss;
      augmentations reflect at tile edges, so they create no padding. ``ignore_border`` b also leaves
      the outer b pixels of every training tile (after cropping) out of the loss, as the seed's
      ``BCEWithLogitsLossPadding`` does for reflection-padded tiles.
    * Cyclic learning rates: ``scheduler: cyclic`` (:mod:`weakseg.engine.optim`).
    """

    target: ClassVar[str]
    n_outputs: ClassVar[int]
    _parameter_constraints: ClassVar[dict[str, Interval]] = {
        "freeze_encoder_epochs": Interval(int, 0, 10**6),
        "encoder_lr_mult": Interval(float, 0, 1e3),
        "ignore_border": Interval(int, 0, 2**15),
    }

    def param_groups(self, module: torch.nn.Module) -> list[dict[str, Any]]:
        """Optimiser groups: the encoder at ``lr × encoder_lr_mult``, the rest at ``lr``."""
        return param_groups(module, lr=self.lr, encoder_lr_mult=self.encoder_lr_mult)

    def _freeze_encoder(self, frozen: bool) -> None:
        """Encoder parameters without (``frozen``) or with gradients; frozen norm layers in eval mode."""
        for _, p in encoder_parameters(self.module_):
            p.requires_grad_(not frozen)
        if frozen:
            names = encoder_names(self.module_)
            for name, sub in self.module_.named_modules():
                if name.split(".", 1)[0] in names and isinstance(sub, (torch.nn.modules.batchnorm._BatchNorm,
                                                                        torch.nn.GroupNorm, torch.nn.LayerNorm)):
                    sub.eval()

    # -- data --------------------------------------------------------------------------------
    def prepare_data(self, X: Any, y: Any = None) -> SegTileDataset:
        """``X``: a bag folder, bag file or list of bag files (``y`` is unused: targets live in the bags)."""
        if isinstance(X, SegTileDataset):
            return X
        if X is None:
            raise WeaksegError(f"{type(self).__name__} needs bags to train on")
        return SegTileDataset(X, target=self.target)

    def data_info(self, data: SegTileDataset) -> dict[str, Any]:
        info = {"tile_size": int(data.tile_size), "n_tiles": int(len(data)), "n_bags": len(data.bags)}
        if self.stain_norm is not None:  # the reference travels with the model (data_info_ is saved)
            check_method(self.stain_norm)
            rows = np.unique(np.linspace(0, len(data) - 1, min(N_REFERENCE_TILES, len(data))).astype(np.int64))
            info["stain"] = fit_reference(data.read(rows)[0], self.stain_norm)
        return info

    def _stain_reference(self) -> dict[str, Any] | None:
        return getattr(self, "data_info_", {}).get("stain")

    def build_module(self, info: dict[str, Any]) -> torch.nn.Module:
        kw = dict(self.backbone_params or {})
        if self.pretrained_path is not None and not getattr(self, "_restoring", False):
            kw["pretrained_path"] = self.pretrained_path
        module = create_backbone(self.backbone, num_classes=self.n_outputs, **kw)
        m = module.default_cfg.input_multiple
        if self.crop_size is not None and self.crop_size % m:
            raise WeaksegError(f"crop_size {self.crop_size} must be a multiple of {m} for backbone {self.backbone!r}")
        if self.crop_size is None and info["tile_size"] % m:
            raise WeaksegError(
                f"tiles of {info['tile_size']} px do not fit backbone {self.backbone!r} (sides must be multiples "
                f"of {m}); set crop_size to a multiple of {m}"
            )
        if self.freeze_encoder_epochs or self.encoder_lr_mult != 1.0:
            encoder_parameters(module)  # a backbone without a known encoder: refused before training
        return module

    # -- training ------------------------------------------------------------------------------
    def _min_positives(self) -> int:
        return 0

    def train_batches(self, data: SegTileDataset, epoch: int, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.freeze_encoder_epochs:  # called after the trainer's module.train(), before the epoch's steps
            self._freeze_encoder(epoch < self.freeze_encoder_epochs)
        sampler = PositiveBatchSampler(data.has_positive, self.batch_size, self._min_positives(),
                                       seed=int(rng.integers(2**31)))
        # under torchrun: this rank's share of the epoch's batches (the same list on every rank)
        batches = rank_share(list(sampler))
        loader = DataLoader(data, batch_sampler=batches, collate_fn=collate_read, num_workers=self.num_workers)
        return _Batches(self, loader, rank_generator(rng))

    def _prepare_train_batch(self, images: torch.Tensor, targets: torch.Tensor,
                             rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2)
        if self.crop_size is not None:
            x, targets = random_crop(x, targets, self.crop_size, rng)
        x = normalize_stain(x.to(self.device_).float().div_(255.0), self._stain_reference())
        x, targets = Augmenter.of(self.augment)(x, targets.to(self.device_), rng)
        targets = targets.long()
        b = self.ignore_border
        if b:
            if 2 * b >= min(targets.shape[-2:]):
                raise WeaksegError(f"ignore_border {b} leaves nothing of {targets.shape[-2]}×{targets.shape[-1]} tiles")
            targets = targets.clone()
            targets[:, :b], targets[:, -b:], targets[:, :, :b], targets[:, :, -b:] = IGNORE, IGNORE, IGNORE, IGNORE
        return self._normalise(x), targets

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone input normalisation of uint8 images, or of float images already in [0, 1]."""
        return self.module_.default_cfg.normalise(x)

    # -- inference -----------------------------------------------------------------------------
    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Cancer probability ``(B, H, W)`` from the module's logits."""
        raise NotImplementedError

    @torch.inference_mode()
    def predict_tiles(self, tiles: np.ndarray, *, tta: bool | None = None) -> np.ndarray:
        """Cancer probability per pixel: uint8 ``(B, T, T, 3)`` RGB tiles → float32 ``(B, T, T)``.

        Any tile size works: sides are reflect-padded to the backbone's input multiple and the
        output cropped back. Runs in eval mode in chunks of ``batch_size``.
        """
        self._check_fitted()
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
            raise WeaksegError(f"predict_tiles expects uint8 (B, T, T, 3) tiles, got {tiles.dtype} {tiles.shape}")
        module = self.module_
        was_training = module.training
        module.eval()
        device = getattr(self, "device_", torch.device("cpu"))
        m = module.default_cfg.input_multiple
        h, w = tiles.shape[1:3]
        pad_h, pad_w = -h % m, -w % m
        out = np.empty(tiles.shape[:3], dtype=np.float32)
        try:
            for lo in range(0, len(tiles), self.batch_size):
                x = torch.from_numpy(tiles[lo:lo + self.batch_size]).to(device).permute(0, 3, 1, 2)
                x = self._normalise(normalize_stain(x.float().div_(255.0), self._stain_reference()))
                if pad_h or pad_w:
                    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
                    x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
                prob = self._forward_prob(module, x, self.tta if tta is None else tta)[:, :h, :w]
                out[lo:lo + len(x)] = prob.cpu().numpy()
        finally:
            module.train(was_training)
        return out

    def _forward_prob(self, module: torch.nn.Module, x: torch.Tensor, tta: bool) -> torch.Tensor:
        """Cancer probability ``(B, H, W)``; with ``tta`` the mean over the 8 flips/90° rotations
        (4 flips for non-square inputs), each mapped back before averaging."""
        if not tta:
            return self._probabilities(module(x).float())
        square = x.shape[-1] == x.shape[-2]
        total = torch.zeros(x.shape[0], *x.shape[-2:], device=x.device)
        moves = [(k, f) for k in ((0, 1, 2, 3) if square else (0, 2)) for f in (False, True)]
        for k, flip in moves:
            xt = torch.rot90(x, k, dims=(-2, -1))
            xt = xt.flip(-1) if flip else xt
            p = self._probabilities(module(xt).float())
            p = p.flip(-1) if flip else p
            total += torch.rot90(p, -k, dims=(-2, -1))
        return total / len(moves)

    def instance_scores(self, bag: Any) -> np.ndarray:
        """Mean cancer probability of each tile of ``bag`` (a bag path or :class:`~weakseg.bags.Bag`)."""
        if not isinstance(bag, Bag):
            bag = Bag(bag)
        return np.concatenate([self.predict_tiles(t).mean(axis=(1, 2)) for _, t in bag.iter_tiles(self.batch_size)])

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n_bags, 2)``: a slide's cancer probability is its highest tile score."""
        p = np.array([self.instance_scores(path).max() for path in resolve_bag_paths(X)])
        return np.stack([1 - p, p], axis=1)

    # -- validation ----------------------------------------------------------------------------
    def _val_stats(self, prob: np.ndarray, targets: np.ndarray) -> Any:
        """Additive statistics of one validation batch against the learner's own targets."""
        raise NotImplementedError

    def _val_metrics(self, stats: Any) -> dict[str, float]:
        """Metrics from the summed statistics of all validation batches."""
        raise NotImplementedError

    def evaluate(self, data: SegTileDataset) -> dict[str, float]:
        """Monitored metric from the validation targets; plus ground-truth pixel scores
        (``dice_cancer``, ``iou_cancer``, ``ap_cancer``) when the bags carry masks.
        Statistics accumulate batch by batch (memory does not grow with the validation set)."""
        stats, counts = None, None
        with_truth = data.has_truth and self.target != "full"  # full targets are the truth already
        for lo in range(0, len(data), self.batch_size):
            rows = np.arange(lo, min(lo + self.batch_size, len(data)))
            images, targets = data.read(rows)
            prob = self.predict_tiles(images, tta=False)  # model selection sees the plain model
            s = self._val_stats(prob, targets)
            stats = s if stats is None else stats + s
            if with_truth:
                c = slide_counts(prob, SlideTruth("validation", data.truth(rows)))
                counts = c if counts is None else counts + c
        metrics = self._val_metrics(stats)
        if counts is not None:
            scores = counts.scores()
            metrics.update({k: scores[k] for k in ("dice_cancer", "iou_cancer", "ap_cancer")})
        return metrics


class _Batches:
    """One epoch of training batches (sized, so iteration-based schedules know the epoch length)."""

    def __init__(self, learner: SegLearner, loader: DataLoader, rng: np.random.Generator) -> None:
        self.learner, self.loader, self.rng = learner, loader, rng

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, targets in self.loader:
            yield self.learner._prepare_train_batch(images, targets, self.rng)


@register_learner("nnpu_seg")
class NNPUSegLearner(SegLearner):
    """Non-negative PU segmentation (Kiryo et al. 2017) on pixel PU labels.

    Args:
        prior: π, the fraction of cancer pixels *within the unlabeled tissue* (not the
            labelled fraction). ``None`` (default): estimated from the training bags before
            training by :func:`~weakseg.losses.estimate_bag_prior` (method
            ``"negative_slides_acc"``: needs slides labelled 0, assumes their tissue is benign;
            SCAR is not assumed, so region labels are fine); recorded in ``prior_``,
            ``prior_method_`` and ``data_info_`` (saved with checkpoints and the model) and
            logged. Without slides labelled 0 (or with too few slides to cross-fit) it warns
            and falls back to 0.5; give π or sweep it (:func:`~weakseg.losses.prior_sweep`)
            there.
        beta, gamma: nnPU threshold β and ascent learning-rate factor γ (paper: 0, 1).
        loss: surrogate ``"sigmoid"`` (paper) or ``"logistic"``.
        nnpu: ``False`` trains the unbiased uPU risk instead.
        min_positives: tiles with labelled positives guaranteed per batch.
        backbone, backbone_params, pretrained_path: the registered backbone, its keyword
            arguments, and an optional local checkpoint for its encoder.
        batch_size, crop_size, augment, num_workers: batches of ``batch_size`` tiles, randomly
            cropped to ``crop_size`` (``None``: whole tiles), augmented during training as ``augment``
            says (:mod:`weakseg.data.augment`: ``true`` = flips/90° rotations, a preset, or a mapping).
        stain_norm: ``None``, ``"reinhard"`` or ``"macenko"`` (:mod:`weakseg.data.stain`): normalise
            every tile to a reference fitted on the training tiles, in training and at predict time.
        tta: test-time augmentation in ``predict_tiles`` (and so in slide maps and evaluation):
            the mean probability over the 8 flips/90° rotations; validation during training never uses it.
        freeze_encoder_epochs, encoder_lr_mult, ignore_border: the fine-tuning protocol (seed 001; see
            :class:`SegLearner`): the encoder frozen for the first epochs, its learning-rate multiplier,
            and a border of pixels at each tile edge left out of the loss.
        max_epochs ... random_state: the engine's parameters (SGD, poly decay by default).
    """

    supervision = "pu"
    target = "pu"
    n_outputs = 1
    monitor: ClassVar[str] = "pu_risk"
    monitor_mode: ClassVar[str] = "min"
    #: π used when ``prior`` is None and cannot be estimated (no slide labelled 0)
    fallback_prior: ClassVar[float] = 0.5
    _parameter_constraints: ClassVar[dict[str, Interval]] = {"prior": Interval(float, 0, 1, closed="neither", none=True)}

    def __init__(
        self, *, prior: float | None = None, beta: float = 0.0, gamma: float = 1.0, loss: str = "sigmoid", nnpu: bool = True,
        min_positives: int = 1, backbone: str = "transunet_tiny", backbone_params: dict | None = None,
        pretrained_path: str | None = None, batch_size: int = 24, crop_size: int | None = None, augment: bool | str | dict = True,
        stain_norm: str | None = None, tta: bool = False,
        freeze_encoder_epochs: int = 0, encoder_lr_mult: float = 1.0, ignore_border: int = 0,
        num_workers: int = 0, max_epochs: int = 10, optimizer: str = "sgd", lr: float = 0.01,
        weight_decay: float = 1e-4, momentum: float = 0.9, scheduler: str = "poly", scheduler_params: dict | None = None,
        grad_clip: float | None = None, patience: int | None = None, min_epochs: int = 0, device: str = "auto",
        amp: bool | str = "auto", amp_dtype: str = "auto", channels_last: bool = False,
        torch_compile: bool | str = False, sync_bn: bool = False, deterministic: bool = False, random_state: int = 0,
    ) -> None:
        self._store_params(locals())

    def _prior(self) -> float:
        """π in use: the given one, else the estimate recorded in ``data_info_``."""
        if self.prior is not None:
            return self.prior
        info = getattr(self, "data_info_", None)
        if not info or "prior" not in info:
            return self.fallback_prior  # before fitting: only the other hyperparameters are being validated
        return info["prior"]

    def _criterion(self) -> nnPULoss:
        try:
            return nnPULoss(self._prior(), beta=self.beta, gamma=self.gamma, loss=self.loss, nnpu=self.nnpu)
        except ValueError as err:
            raise WeaksegError(f"nnpu_seg: {err}") from None

    def data_info(self, data: SegTileDataset) -> dict[str, Any]:
        """The shared facts, plus π and how it was found (estimated here when ``prior`` is None)."""
        info = super().data_info(data)
        if self.prior is None:
            info.update(self._estimate_training_prior(data))
        self.prior_, self.prior_method_ = info.get("prior", self.prior), info.get("prior_method", "given")
        return info

    def _estimate_training_prior(self, data: SegTileDataset) -> dict[str, Any]:
        # about 20,000 tiles in all whatever the cohort's size (a few minutes of CPU at most)
        per_slide = max(4, min(64, 20_000 // max(1, len(data.paths))))
        try:
            est = estimate_bag_prior(data.paths, max_tiles_per_slide=per_slide, random_state=self.random_state)
        except ValueError as err:
            warnings.warn(f"nnpu_seg: cannot estimate the class prior from the training bags ({err}); "
                          f"using π = {self.fallback_prior}. Give learner.params.prior or sweep it.", stacklevel=4)
            return {"prior": self.fallback_prior, "prior_method": "fallback"}
        prior = float(np.clip(est.prior, 1e-3, 1 - 1e-3))  # nnPU needs 0 < π < 1
        if prior != est.prior:
            warnings.warn(f"nnpu_seg: estimated class prior {est.prior:.4g} clipped to {prior}", stacklevel=4)
        logging.getLogger("weakseg.engine").info(
            "class prior π = %.4f estimated by %s (π = %.4f within the unlabeled tissue of the %d slides not "
            "labelled 0, which hold %.0f%% of it; %d slides labelled 0)", prior, est.method,
            est.prior_positive_slides, est.n_other_slides, 100 * est.positive_share, est.n_negative_slides)
        return {"prior": prior, "prior_method": est.method}

    def _restore_fitted_state(self, state: dict[str, Any]) -> None:
        super()._restore_fitted_state(state)
        info = self.data_info_
        self.prior_ = info.get("prior", self.prior)
        self.prior_method_ = info.get("prior_method", "given")

    def prepare_data(self, X: Any, y: Any = None) -> SegTileDataset:
        self._criterion()  # validate the PU hyperparameters before reading any data
        data = super().prepare_data(X, y)
        if not data.has_positive.any():
            raise WeaksegError(f"{data.paths[0].parent}: no tile has labelled positive pixels; nnPU needs some")
        return data

    def _min_positives(self) -> int:
        return self.min_positives

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, y = batch
        step = self._criterion()(self.module_(x), y)
        r = step.risks
        logs = {"nnpu_risk": r.nnpu.detach(), "negative_risk": r.negative_risk.detach(), "ascent": float(step.ascent)}
        return StepOutput(loss=step.objective, lr_scale=step.lr_scale, logs=logs)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits[:, 0])

    def estimate_prior(self, X: Any, max_pixels: int = 200_000, random_state: int = 0) -> float:
        """π of held-out PU bags ``X`` from this fitted model's cancer probabilities.

        Scores: up to ``max_pixels`` labelled and as many unlabeled pixels (uniformly subsampled
        per tile, each weighted by the pixels it stands for); ``X`` must not overlap the bags
        the model was trained on. When ``X`` has slides labelled 0 (without labelled pixels),
        :func:`~weakseg.losses.negative_slide_prior` (adjusted classify-and-count against their
        tissue; does not assume SCAR, so it suits region labels). Otherwise, with a warning,
        best-bin estimation (:func:`~weakseg.losses.bbe_prior`), which assumes labelled
        positives are a random sample of all positives (SCAR): labels that favour region
        interiors (``weaken --erode``, a few whole regions) make it underestimate π. A model
        trained with a guessed prior works (only the scores' ranking and the negative slides'
        calibration matter); refit with the estimate or sweep around it.
        """
        data = self.prepare_data(X)
        rng = np.random.default_rng(random_state)
        per_tile = max(1, max_pixels // len(data))
        bag_rows = data.index[:, 0]
        negative_bag = np.array([bag.label == 0 and not data.has_positive[bag_rows == i].any()
                                 for i, bag in enumerate(data.bags)])
        parts: dict[str, tuple[list, list]] = {"pos": ([], []), "neg": ([], []), "unl": ([], [])}
        for lo in range(0, len(data), self.batch_size):
            rows = np.arange(lo, min(lo + self.batch_size, len(data)))
            images, targets = data.read(rows)
            prob = self.predict_tiles(images)
            for p, t, neg in zip(prob, targets, negative_bag[bag_rows[rows]]):
                for label, key in ((PU_POSITIVE, "pos"), (PU_UNLABELED, "neg" if neg else "unl")):
                    values = p[t == label]
                    n = len(values)
                    if n > per_tile:
                        values = rng.choice(values, per_tile, replace=False)
                    parts[key][0].append(values)
                    parts[key][1].append(np.full(len(values), n / max(1, len(values))))
        scores = {k: np.concatenate([np.empty(0, np.float32), *v[0]]) for k, v in parts.items()}
        weights = {k: np.concatenate([np.empty(0), *v[1]]) for k, v in parts.items()}
        if not len(scores["pos"]) or not (len(scores["unl"]) or len(scores["neg"])):
            raise WeaksegError("estimate_prior needs bags with both labelled positive and unlabeled pixels")
        if len(scores["neg"]) and len(scores["unl"]):
            try:
                prior, _ = negative_slide_prior(
                    scores["pos"], scores["neg"], scores["unl"], weights["unl"].sum(), weights["neg"].sum(),
                    weights_labeled=weights["pos"], weights_negative=weights["neg"],
                    weights_unlabeled_positive=weights["unl"])
                return prior
            except ValueError as err:
                warnings.warn(f"estimate_prior: negative-slide estimate failed ({err}); using BBE", stacklevel=2)
        else:
            warnings.warn("estimate_prior: no held-out slide labelled 0; using BBE, which assumes labelled "
                          "positives are a random sample of the positives and underestimates π on region labels",
                          stacklevel=2)
        unl = np.concatenate([scores["unl"], scores["neg"]])
        return bbe_prior(scores["pos"], unl)

    def _val_stats(self, prob: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Sums of ℓ(g) and ℓ(−g) over P, ℓ(−g) over U; counts of P, U, missed P, U predicted positive."""
        g = torch.logit(torch.from_numpy(prob).double().clamp(1e-6, 1 - 1e-6))
        pos = torch.from_numpy(targets == PU_POSITIVE)
        unl = torch.from_numpy(targets == PU_UNLABELED)
        pred = g >= 0
        loss_pos, loss_neg = surrogate_loss(g, self.loss), surrogate_loss(-g, self.loss)
        return np.array([
            float(loss_pos[pos].sum()), float(loss_neg[pos].sum()), float(loss_neg[unl].sum()),
            int(pos.sum()), int(unl.sum()), int((pos & ~pred).sum()), int((unl & pred).sum()),
        ])

    def _val_metrics(self, stats: np.ndarray) -> dict[str, float]:
        sp_pos, sp_neg, su_neg, n_p, n_u, missed, false_pos = stats
        if n_p == 0 or n_u == 0:
            raise WeaksegError("validation bags need both labelled positive and unlabeled pixels for the PU risk")
        pi = self._prior()
        negative = su_neg / n_u - pi * sp_neg / n_p
        return {
            # PU estimate of the 0-1 risk (Kiryo et al.): 2π·FNR_P + FPR_U − π
            "pu_risk": 2 * pi * missed / n_p + false_pos / n_u - pi,
            "nnpu_risk": pi * sp_pos / n_p + max(0.0, negative),
        }


@register_learner("supervised_seg")
class SupervisedSegLearner(SegLearner):
    """Fully supervised upper bound: benign vs cancer tissue, 0.5 CE + 0.5 Dice (TransUNet's loss).

    Parameters as :class:`NNPUSegLearner` without the PU ones; ``ce_weight`` weights CE
    against Dice.
    """

    supervision = "full"
    target = "full"
    n_outputs = 2
    monitor: ClassVar[str] = "dice_cancer"
    monitor_mode: ClassVar[str] = "max"

    def __init__(
        self, *, ce_weight: float = 0.5, backbone: str = "transunet_tiny", backbone_params: dict | None = None,
        pretrained_path: str | None = None, batch_size: int = 24, crop_size: int | None = None, augment: bool | str | dict = True,
        stain_norm: str | None = None, tta: bool = False,
        freeze_encoder_epochs: int = 0, encoder_lr_mult: float = 1.0, ignore_border: int = 0,
        num_workers: int = 0, max_epochs: int = 10, optimizer: str = "sgd", lr: float = 0.01,
        weight_decay: float = 1e-4, momentum: float = 0.9, scheduler: str = "poly", scheduler_params: dict | None = None,
        grad_clip: float | None = None, patience: int | None = None, min_epochs: int = 0, device: str = "auto",
        amp: bool | str = "auto", amp_dtype: str = "auto", channels_last: bool = False,
        torch_compile: bool | str = False, sync_bn: bool = False, deterministic: bool = False, random_state: int = 0,
    ) -> None:
        self._store_params(locals())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return ce_dice_loss(self.module_(x), y, ignore_index=IGNORE, ce_weight=self.ce_weight)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)[:, 1]

    def _val_stats(self, prob: np.ndarray, targets: np.ndarray) -> SlideCounts:
        common = np.where(targets == IGNORE, 0, targets.astype(np.int64) + 1).astype(np.uint8)
        return slide_counts(prob, SlideTruth("validation", common))

    def _val_metrics(self, stats: SlideCounts) -> dict[str, float]:
        scores = stats.scores()
        return {k: scores[k] for k in ("dice_cancer", "iou_cancer", "ap_cancer", "dice_benign")}


__all__ = ["NNPUSegLearner", "SegLearner", "SupervisedSegLearner"]
