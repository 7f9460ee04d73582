"""A custom learner living outside weakseg, registered when a recipe lists this module in ``plugins:``.

It scores each tile from its mean colour with a linear layer and pools the scores with a max:
small enough for tests, complete enough to train, predict and evaluate through the CLI.
"""

from __future__ import annotations

import numpy as np
import torch

from weakseg.bags import Bag, list_bags
from weakseg.learners.base import PixelPredictorMixin, TorchLearner, register_learner


@register_learner("mean_colour_mil")
class MeanColourMIL(TorchLearner):
    """Max-pooled linear tile scores on mean tile colour."""

    supervision = "slide"

    def __init__(self, *, max_epochs: int = 3, lr: float = 0.1, optimizer: str = "adam", scheduler: str = "none",
                 random_state: int = 0) -> None:
        self.max_epochs = max_epochs
        self.lr = lr
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.random_state = random_state

    @staticmethod
    def _features(bag: Bag) -> torch.Tensor:
        return torch.from_numpy(bag.read_tiles().mean(axis=(1, 2)).astype(np.float32) / 255.0)

    def prepare_data(self, X, y=None):
        paths = list_bags(X) if not isinstance(X, (list, tuple)) else [p for x in X for p in list_bags(x)]
        bags = [Bag(p) for p in paths]
        labels = [b.label for b in bags] if y is None else list(y)
        return [(self._features(b), float(label)) for b, label in zip(bags, labels)]

    def data_info(self, data):
        return {"dim": int(data[0][0].shape[1])}

    def build_module(self, info):
        return torch.nn.Linear(info["dim"], 1)

    def train_batches(self, data, epoch, rng):
        return [data[i] for i in rng.permutation(len(data))]

    def training_step(self, batch):
        x, label = batch
        logit = self.module_(x.to(self.device_)).max()
        return torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor(label, device=logit.device))

    @torch.no_grad()
    def _tile_logits(self, x: torch.Tensor) -> np.ndarray:
        return self.module_(x.to(self.device_)).squeeze(1).cpu().numpy()

    def evaluate(self, data):
        from sklearn.metrics import roc_auc_score

        labels = [label for _, label in data]
        scores = [self._tile_logits(x).max() for x, _ in data]
        return {"slide_auc": float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")}

    def predict_proba(self, X):
        p = np.array([1 / (1 + np.exp(-self._tile_logits(x).max())) for x, _ in self.prepare_data(X)])
        return np.stack([1 - p, p], axis=1)

    def instance_scores(self, bag):
        bag = bag if isinstance(bag, Bag) else Bag(bag)
        return 1 / (1 + np.exp(-self._tile_logits(self._features(bag))))


@register_learner("mean_colour_seg")
class MeanColourSeg(PixelPredictorMixin, MeanColourMIL):
    """The same linear colour model applied per pixel: a segmentation learner (it has ``predict_tiles``)."""

    @torch.no_grad()
    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(tiles.astype(np.float32) / 255.0).to(self.device_)
        return torch.sigmoid(self.module_(x)).squeeze(-1).cpu().numpy()
