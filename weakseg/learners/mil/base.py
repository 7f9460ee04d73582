"""Shared machinery of the MIL learners: bag sources, batches, inference over one or many bags."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ...bags import Bag
from ...data import H5Bags, InMemoryBags, MILBatch, MILSource, as_source, bag_loader, epoch_plan, eval_plan
from ...encoders import create_encoder, resolve_weights
from ...engine.distributed import rank_share
from ...errors import WeaksegError
from ...metrics.mil import slide_metrics
from ..base import TorchLearner


class MILLearner(TorchLearner):
    """Base of ``abmil`` and ``topk_mil``: bags from HDF5 files or in-memory arrays.

    Subclasses store the constructor parameters ``encoder``, ``encoder_params``, ``pretrained``,
    ``pretrained_path``, ``feature_key``, ``batch_size``, ``num_workers``, ``augment`` and implement
    :meth:`build_module`, :meth:`training_step`, :meth:`_train_size`, :meth:`_bag_outputs`.
    """

    supervision = "slide"
    _renamed_params = {"checkpoint": "pretrained_path"}  # one weights parameter name across weakseg
    _fill_bags: bool = False  # top up small training bags to _train_size() by drawing with replacement

    # -- data ------------------------------------------------------------------------------
    def prepare_data(self, X: Any, y: Any = None) -> MILSource:
        features: bool | str | None = None
        if self.encoder == "features":
            features = self.feature_key or True
        source = as_source(X, y, features=features)
        if (source.labels < 0).any():
            bad = [source.ids[i] for i in np.flatnonzero(source.labels < 0)[:3]]
            raise WeaksegError(f"bags without a slide label (label < 0): {', '.join(bad)}")
        return source

    def data_info(self, data: MILSource) -> dict[str, Any]:
        return {"kind": data.kind, "instance_shape": list(data.instance_shape),
                "feature_key": getattr(data, "feature_key", None)}

    def _source_for(self, X: Any) -> MILSource:
        """A source for inference: labels unknown unless present in the bags."""
        features = (self.data_info_.get("feature_key") or True) if self.data_info_["kind"] == "features" else None
        if isinstance(X, (InMemoryBags, H5Bags)):
            return X
        if isinstance(X, (list, tuple)) and X and not isinstance(X[0], (str, os.PathLike)):
            return InMemoryBags(X, None)
        return as_source(X, None, features=features)

    def _build_encoder(self, info: dict[str, Any]) -> nn.Module:
        shape = info["instance_shape"]
        if info["kind"] == "features" and self.encoder != "features":
            raise WeaksegError(f"bags hold (N, D) features but encoder={self.encoder!r} expects images; "
                               "use encoder='features'")
        if info["kind"] == "image" and self.encoder == "features":
            raise WeaksegError("encoder='features' needs (N, D) feature bags or a feature cache (weakseg embed)")
        weights = None
        if not getattr(self, "_restoring", False) and (self.pretrained or self.pretrained_path is not None):
            weights = resolve_weights(self.encoder, self.pretrained_path)
        kw = dict(self.encoder_params or {})
        if info["kind"] == "features":
            return create_encoder("features", in_dim=shape[0])
        return create_encoder(self.encoder, in_chans=shape[0], input_size=shape[-1], pretrained_path=weights,
                              random_init=weights is None, **kw)

    # -- training --------------------------------------------------------------------------
    def _train_size(self) -> int | None:
        """Instances drawn per training bag (``None``: all)."""
        raise NotImplementedError

    def train_batches(self, data: MILSource, epoch: int, rng: np.random.Generator) -> Iterator[MILBatch]:
        # under torchrun: this rank's share of the epoch's bags (the same plan on every rank)
        plan = rank_share(epoch_plan(data, rng, size=self._train_size(), fill=self._fill_bags))
        for batch in bag_loader(data, plan, batch_size=self.batch_size, num_workers=self.num_workers):
            yield batch.to(self.device_)

    # -- inference -------------------------------------------------------------------------
    def _bag_outputs(self, batch: MILBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(bag probabilities (B,), instance scores (B, N))`` for a batch, in eval mode."""
        raise NotImplementedError

    @torch.inference_mode()
    def _predict_source(self, source: MILSource) -> tuple[np.ndarray, list[np.ndarray]]:
        self._check_fitted()
        module = self.module_
        was_training = module.training
        module.eval()
        device = getattr(self, "device_", torch.device("cpu"))
        probs = np.empty(len(source))
        scores: list[np.ndarray] = [np.empty(0)] * len(source)
        try:
            for batch in bag_loader(source, eval_plan(source), batch_size=1, num_workers=self.num_workers):
                batch = batch.to(device)
                p, s = self._bag_outputs(batch)
                i = int(batch.bag[0])
                probs[i] = float(p[0])
                scores[i] = s[0, batch.mask[0]].float().cpu().numpy()
        finally:
            module.train(was_training)
        return probs, scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n_bags, 2)`` probabilities of bags ``X`` (folder, paths, or list of arrays)."""
        self._check_fitted()  # before reading bags with the fitted data settings
        p, _ = self._predict_source(self._source_for(X))
        return np.stack([1 - p, p], axis=1)

    def _single(self, bag: Any) -> MILSource:
        if isinstance(bag, Bag):
            bag = bag.path
        if isinstance(bag, (str, os.PathLike)):
            if not Path(bag).is_file():
                raise WeaksegError(f"{bag}: no such bag file")
            return self._source_for([bag])
        return InMemoryBags([np.asarray(bag)], None)

    def instance_scores(self, bag: Any) -> np.ndarray:
        """One score per instance of ``bag`` (a bag path, a :class:`~weakseg.bags.Bag`, or an array)."""
        self._check_fitted()
        return self._predict_source(self._single(bag))[1][0]

    def evaluate(self, data: MILSource) -> dict[str, float]:
        probs, _ = self._predict_source(data)
        return slide_metrics(data.labels, probs)
