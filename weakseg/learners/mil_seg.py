"""``mil_seg``: slide labels → MIL tile scores → pseudo-masks → a segmentation network, refined.

Stages of :meth:`MILSeg.fit`, every artifact under the run directory:

1. ``mil/``: the MIL learner (``topk_mil`` or ``abmil``) fits the slide-labelled bags
   (checkpoints, ``metrics.csv``, ``learner.pt``); ``X_val`` selects its best epoch by slide AUC.
2. Round-0 pseudo-masks (:func:`tile_pseudo_labels`): on a positive slide the tiles ranked by
   MIL score give the top ``pseudo_top`` fraction → cancer, the bottom ``pseudo_bottom`` →
   benign, the rest ignored; on a negative slide every tile is benign. A tile's label covers its
   tissue (:func:`weakseg.tiling.tissue.detect_tissue` per tile, never the ground truth);
   background is ignored.
3. Refinement (:func:`weakseg.refine.refine`): round ``k`` fits a fresh segmentation learner on
   ``rounds/r{k}/labels`` (round 0: the MIL pseudo-masks), predicts the training bags and the
   ``policy`` relabels the free pixels (negative slides and background stay fixed) for round
   ``k + 1``; ``rounds.csv`` holds each round's label and prediction Dice against the ground
   truth where bags carry masks (evaluation only).

The last round's segmentation learner gives the pixel maps (:meth:`MILSeg.predict_tiles`). Slide
probabilities and tile scores (:meth:`MILSeg.predict_proba`, :meth:`MILSeg.instance_scores`) are
the MIL learner's: it is the model trained for slide classification.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..bags import Bag
from ..data.sources import resolve_bag_paths
from ..engine.contract import Resume
from ..errors import WeaksegError
from ..refine import IGNORE, NEGATIVE, POSITIVE, LabelPolicy, ThresholdPolicy, TopKPolicy, refine
from .base import (LEARNERS, Learner, PixelPredictorMixin, ResumableFitMixin, create_learner, learner_tags,
                   register_learner)
from .mil.aggregate import n_floor, n_top

MIL_DIR = "mil"
LEARNER_FILE = "learner.pt"
POLICIES = {"threshold": ThresholdPolicy, "topk": TopKPolicy}


def tile_pseudo_labels(scores: np.ndarray, slide_label: int, top: float = 0.2, bottom: float = 0.2) -> np.ndarray:
    """Per-tile round-0 labels uint8 ``(N,)`` from one slide's MIL tile scores.

    Positive slide: the top ``max(1, ⌊top·N⌋)`` tiles by score → :data:`POSITIVE`, the bottom
    ``⌊bottom·N⌋`` (never overlapping the top) → :data:`NEGATIVE`, the rest :data:`IGNORE`; ties
    break by tile index. Negative slide: every tile → :data:`NEGATIVE`.
    """
    _check_fractions(top, bottom)
    if slide_label not in (0, 1):
        raise WeaksegError(f"mil_seg: pseudo-masks need a slide label of 0 or 1, got {slide_label}")
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n = len(scores)
    if slide_label == 0 or n == 0:
        return np.full(n, NEGATIVE, dtype=np.uint8)
    order = np.argsort(-scores, kind="stable")
    k_top = n_top(n, top)
    k_bottom = min(n_floor(n, bottom), n - k_top)
    labels = np.full(n, IGNORE, dtype=np.uint8)
    labels[order[:k_top]] = POSITIVE
    labels[order[n - k_bottom:]] = NEGATIVE
    return labels


def _check_fractions(top: float, bottom: float) -> None:
    if not (0.0 < top <= 1.0 and 0.0 <= bottom <= 1.0):
        raise WeaksegError(f"mil_seg: need 0 < pseudo_top <= 1 and 0 <= pseudo_bottom <= 1, got {top}, {bottom}")


def _learner_state(learner: Learner) -> dict[str, Any]:
    return {"learner": learner.name, "params": learner.get_params(), "state": learner._fitted_state()}


def _restore_learner(state: dict[str, Any]) -> Learner:
    learner = create_learner(state["learner"], **state["params"])
    learner._restore_fitted_state(state["state"])
    return learner


@register_learner("mil_seg")
class MILSeg(PixelPredictorMixin, ResumableFitMixin, Learner):
    """Segmentation from slide labels: MIL pseudo-masks refined by a segmentation network (see module doc).

    Args:
        mil_learner, mil_params: the registered slide-supervised learner of stage 1 and its
            parameters (``topk_mil``: Lerousseau et al. 2020; ``abmil``: attention scores).
        seg_learner, seg_params: the segmentation learner trained on the pseudo-masks
            (``supervised_seg``: 0.5 CE + 0.5 Dice on ``pseudo_labels``) and its parameters.
        pseudo_top, pseudo_bottom: fractions of a positive slide's tiles made cancer / benign
            by MIL score in the round-0 masks.
        rounds: segmentation fits (round 0 on the MIL masks, later rounds on refined labels).
        policy, policy_params: relabelling rule between rounds, ``"threshold"``
            (``{hi, lo}``: p > hi cancer, p < lo benign; default 0.7 / 0.3) or ``"topk"``
            (``{top, bottom}`` fractions of each slide's free pixels).
        tol: stop refining once fewer than this fraction of free pixels change label.
        device, random_state: passed to both nested learners unless their params set them.
    """

    supervision = "slide"
    #: parameters holding the settings of a learner this one builds (params key -> key of its name); recipe
    #: validation checks them like top-level parameters (``learner.params.seg_params.lr``)
    nested_learners: ClassVar[dict[str, str]] = {"mil_params": "mil_learner", "seg_params": "seg_learner"}

    def __init__(
        self, *, mil_learner: str = "topk_mil", mil_params: dict | None = None, seg_learner: str = "supervised_seg",
        seg_params: dict | None = None, pseudo_top: float = 0.2, pseudo_bottom: float = 0.2, rounds: int = 2,
        policy: str = "threshold", policy_params: dict | None = None, tol: float = 0.01, device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self._store_params(locals())

    # -- construction of the parts -------------------------------------------------------
    def _nested(self, name: str, params: dict | None, role: str) -> Learner:
        try:
            cls = LEARNERS.get(name)
        except WeaksegError as err:
            raise WeaksegError(f"mil_seg: {role}: {err}") from None
        kw = dict(params or {})
        valid = cls._get_param_names()
        for key, value in (("device", self.device), ("random_state", self.random_state)):
            if key in valid:
                kw.setdefault(key, value)
        learner = create_learner(name, **kw)
        self._check_nested_role(role, cls)
        return learner

    @staticmethod
    def _check_nested_role(role: str, cls: type) -> None:
        """The MIL stage learns from slide labels; the segmentation learner predicts tiles."""
        name = getattr(cls, "name", None) or cls.__name__
        if role == "mil_learner" and cls.supervision != "slide":
            raise WeaksegError(f"mil_seg: mil_learner {name!r} must learn from slide labels (supervision 'slide')")
        if role == "seg_learner" and not learner_tags(cls).pixel_maps:
            raise WeaksegError(f"mil_seg: seg_learner {name!r} has no predict_tiles (not a segmentation learner)")

    def _policy(self) -> LabelPolicy:
        if self.policy not in POLICIES:
            raise WeaksegError(f"mil_seg: policy must be one of {sorted(POLICIES)}, got {self.policy!r}")
        try:
            return POLICIES[self.policy](**(self.policy_params or {}))
        except (TypeError, ValueError) as err:
            raise WeaksegError(f"mil_seg: policy_params for {self.policy!r}: {err}") from None

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *, X_val: Any = None, y_val: Any = None,
            run_dir: str | os.PathLike | None = None, resume: Resume = False) -> MILSeg:
        """Run the three stages on slide-labelled bags ``X`` (labels from the bags; ``y`` must be None).

        ``run_dir`` keeps every artifact (default: a temporary folder removed after fitting);
        ``resume`` (``True`` or ``"auto"``) reuses a finished MIL stage (``mil/learner.pt``) or
        continues its checkpoints when there are any, then refines from round 0 again.
        """
        if y is not None or y_val is not None:
            raise WeaksegError("mil_seg reads slide labels from the bags; pass y=None")
        if self.rounds < 1:
            raise WeaksegError(f"mil_seg: rounds must be >= 1, got {self.rounds}")
        paths = resolve_bag_paths(X)
        policy = self._policy()
        _check_fractions(self.pseudo_top, self.pseudo_bottom)
        mil = self._nested(self.mil_learner, self.mil_params, "mil_learner")
        seg = self._nested(self.seg_learner, self.seg_params, "seg_learner")
        with contextlib.ExitStack() as stack:
            if run_dir is None:
                run_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mil_seg-"))
            run_dir = Path(run_dir)
            mil = self._fit_mil(mil, paths, X_val, run_dir / MIL_DIR, resume)
            labels = self._tile_labels(mil, paths)

            def initial(bag: Bag, idx: np.ndarray, tiles: np.ndarray) -> np.ndarray:
                t = bag.tile_size
                return np.broadcast_to(labels[bag.slide_id][idx][:, None, None], (len(idx), t, t))

            result = refine(seg, paths, run_dir, policy=policy, rounds=self.rounds, tol=self.tol, initial=initial)
        self.mil_ = mil
        self.seg_ = result.learner
        self.rounds_ = result.rounds
        return self

    def _fit_mil(self, mil: Learner, paths: list[Path], X_val: Any, out: Path, resume: Resume) -> Learner:
        saved = out / LEARNER_FILE
        if resume and saved.is_file():
            return Learner.load(saved)
        if learner_tags(mil).resumable:
            mil.fit(paths, X_val=X_val, run_dir=out, resume="auto" if resume else False)
        else:
            mil.fit(paths)
        mil.save(saved)
        return mil

    def _tile_labels(self, mil: Learner, paths: list[Path]) -> dict[str, np.ndarray]:
        """Round-0 per-tile labels of every training slide, by slide id."""
        out: dict[str, np.ndarray] = {}
        for path in paths:
            with Bag(path) as bag:
                scores = np.asarray(mil.instance_scores(bag), dtype=np.float64)
                if scores.shape != (len(bag),):
                    raise WeaksegError(f"{path}: {self.mil_learner} gave {scores.shape} tile scores for {len(bag)} tiles")
                out[bag.slide_id] = tile_pseudo_labels(scores, bag.label, self.pseudo_top, self.pseudo_bottom)
        return out

    # -- inference -------------------------------------------------------------------------
    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """Cancer probability per pixel of the final segmentation learner: uint8 ``(B, T, T, 3)`` → ``(B, T, T)``."""
        self._check_fitted()
        return self.seg_.predict_tiles(tiles)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n_bags, 2)`` slide probabilities of the MIL learner."""
        self._check_fitted()
        return self.mil_.predict_proba(X)

    def instance_scores(self, bag: Any) -> np.ndarray:
        """The MIL learner's score of each tile of ``bag``."""
        self._check_fitted()
        return self.mil_.instance_scores(bag)

    # -- persistence -----------------------------------------------------------------------
    def _fitted_state(self) -> dict[str, Any]:
        return {"mil": _learner_state(self.mil_), "seg": _learner_state(self.seg_),
                "rounds": self.rounds_.to_dict(orient="list")}

    def _restore_fitted_state(self, state: dict[str, Any]) -> None:
        self.mil_ = _restore_learner(state["mil"])
        self.seg_ = _restore_learner(state["seg"])
        self.rounds_ = pd.DataFrame(state["rounds"])


__all__ = ["MILSeg", "tile_pseudo_labels"]
