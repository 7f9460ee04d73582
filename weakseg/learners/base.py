"""Learner base classes: scikit-learn conventions on top of the weakseg training engine.

Conventions (as in scikit-learn):

* ``__init__`` only stores its keyword arguments as attributes of the same name;
* ``fit(...)`` returns ``self``; fitted state ends in ``_`` (``module_``, ``history_``, ...);
* ``random_state`` seeds everything the learner draws;
* ``get_params`` / ``set_params`` / ``clone`` work from the constructor signature.

Learners are scikit-learn estimators (:class:`sklearn.base.BaseEstimator`): ``get_params``,
``set_params`` and :func:`sklearn.base.clone` work as for any estimator. What a learner can do
beyond slide probabilities and tile scores is declared by mixins, read by :func:`learner_tags`:
:class:`PixelPredictorMixin` (``predict_tiles``: pixel maps), :class:`AttentionMixin`
(``attention``), :class:`ResumableFitMixin` (``fit(..., run_dir=, resume=)``).

A :class:`TorchLearner` implements the hooks of :class:`weakseg.engine.Trainable` and lets
:class:`weakseg.engine.Trainer` run the loop (optimiser, scheduler, checkpoints, resume, early
stopping, metrics); the trainer returns a :class:`~weakseg.engine.TrainResult` and the learner
sets its own fitted state from it:

``prepare_data(X, y)``      → an object the other hooks understand (in-memory or HDF5-backed)
``data_info(data)``         → plain dict the module's shape depends on (e.g. feature dim), kept as ``data_info_``
``build_module(info)``      → the ``torch.nn.Module`` to train (kept as ``module_``); while
                              :meth:`Learner.load` rebuilds it, ``self._restoring`` is True, so
                              pretrained weights need not be loaded (the saved state replaces them)
``train_batches(data, epoch, rng)`` → an iterable of batches for one epoch
``training_step(batch)``    → a loss tensor or a :class:`StepOutput`
``evaluate(data)``          → validation metrics; ``monitor`` names the one that picks the best epoch
"""

from __future__ import annotations

import abc
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from ..capabilities import (AttentionMixin, InstanceScorerMixin, LearnerTags, PixelPredictorMixin, ResumableFitMixin,
                            learner_tags)
from ..engine.contract import Resume, StepOutput, TrainConfig, TrainResult
from ..errors import WeaksegError
from ..registry import Registry

SUPERVISIONS = ("slide", "pu", "full")
LEARNERS: Registry[Learner] = Registry("learner", entry_point_group="weakseg.learners")
SAVE_FORMAT = "weakseg-learner/1"

#: Constructor parameters every :class:`TorchLearner` exposes for the engine (declared by :class:`TrainConfig`).
TRAINER_PARAMS = TrainConfig.names()


@dataclass(frozen=True)
class Interval:
    """A numeric range a learner parameter must lie in (scikit-learn's ``Interval`` constraint).

    ``kind`` is ``int`` or ``float``; ``closed`` says which ends belong to the range
    (``"both"``, ``"left"``, ``"right"``, ``"neither"``); ``none`` allows ``None``. Floats must be
    finite whatever the range.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"
    none: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None:
            if self.none:
                return
            raise WeaksegError(f"{name} must be {self.describe()}, got None")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise WeaksegError(f"{name} must be {self.describe()}, got {_short(value)}")
        if self.kind is int and not isinstance(value, (int, np.integer)):
            raise WeaksegError(f"{name} must be an integer {self.describe()}, got {_short(value)}")
        if isinstance(value, (float, np.floating)) and not np.isfinite(value):
            raise WeaksegError(f"{name} must be a finite number {self.describe()}, got {value}")
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        if not (low_ok and high_ok):
            raise WeaksegError(f"{name} must be {self.describe()}, got {_short(value)}")

    def describe(self) -> str:
        lo = "[" if self.closed in ("both", "left") else "("
        hi = "]" if self.closed in ("both", "right") else ")"
        if self.high is None:
            text = f"{'>=' if lo == '[' else '>'} {self.low:g}" if self.low is not None else "a number"
        else:
            text = f"in {lo}{self.low:g}, {self.high:g}{hi}"
        return text + (" or null" if self.none else "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}…{text[-8:]} ({len(text)} characters)"


#: Constraints of parameters that many learners share (by name); checked by
#: :meth:`Learner._validate_params` for the ones a learner has. A subclass adds or overrides
#: entries in its ``_parameter_constraints`` and puts cross-parameter rules in ``_check_params``.
COMMON_CONSTRAINTS: dict[str, Interval] = {
    "max_epochs": Interval(int, 1, 10**6),
    "min_epochs": Interval(int, 0, 10**6),
    "patience": Interval(int, 1, 10**6, none=True),
    "lr": Interval(float, 0, 1e3, closed="right"),
    "weight_decay": Interval(float, 0, 1e3),
    "momentum": Interval(float, 0, 1),
    "grad_clip": Interval(float, 0, None, closed="neither", none=True),
    "random_state": Interval(int, 0, 2**32 - 1),
    "batch_size": Interval(int, 1, 2**20),
    "num_workers": Interval(int, 0, 1024),
    "max_instances": Interval(int, 1, 2**31, none=True),
    "crop_size": Interval(int, 1, 2**16, none=True),
    "dropout": Interval(float, 0, 1, closed="left"),
    "prior": Interval(float, 0, 1, closed="neither"),
}
#: integers beyond this magnitude are refused for any parameter (no setting needs them; they overflow C types)
MAX_INT = 2**63 - 1


def register_learner(name: str):
    """Class decorator registering a :class:`Learner` subclass under ``name``."""

    def deco(cls: type[Learner]) -> type[Learner]:
        if getattr(cls, "supervision", None) not in SUPERVISIONS:
            raise WeaksegError(f"learner {name!r} must declare supervision as one of {SUPERVISIONS}")
        for method, mixin in (("predict_tiles", PixelPredictorMixin), ("attention", AttentionMixin)):
            if callable(getattr(cls, method, None)) and not issubclass(cls, mixin):
                raise WeaksegError(f"learner {name!r} defines {method}() but does not declare it: "
                                   f"subclass weakseg.learners.{mixin.__name__}")
        cls.name = name
        return LEARNERS.register(name)(cls)

    return deco


def create_learner(name: str, **params: Any) -> Learner:
    """Instantiate the learner registered as ``name`` with hyperparameters ``params``."""
    return LEARNERS.create(name, **params)


def list_learners(pattern: str = "*") -> list[str]:
    """Registered learner names matching ``pattern``."""
    return LEARNERS.list(pattern)


class Learner(InstanceScorerMixin, BaseEstimator, abc.ABC):
    """Base of all learners. Subclasses set ``supervision`` and register with :func:`register_learner`.

    A scikit-learn estimator: keyword-only constructor parameters stored unchanged, fitted state
    in attributes ending in ``_``, ``clone`` gives an unfitted copy.
    """

    supervision: ClassVar[str]
    name: ClassVar[str] = ""
    #: old parameter name -> new one, so learner files saved before a rename still load
    _renamed_params: ClassVar[dict[str, str]] = {}

    # -- scikit-learn parameter protocol ------------------------------------------------
    def _store_params(self, values: dict[str, Any]) -> None:
        """Store every constructor parameter unchanged under its own name (``__init__`` calls
        ``self._store_params(locals())``): scikit-learn's rule that a constructor does nothing else."""
        for name in self._get_param_names():
            setattr(self, name, values[name])

    def set_params(self, **params: Any) -> Learner:
        """Set constructor parameters; an unknown name is an error naming the closest valid one."""
        valid = self._get_param_names()
        for key in params:
            base = key.split("__", 1)[0]
            if base not in valid:
                close = difflib.get_close_matches(base, valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise WeaksegError(f"{type(self).__name__} has no parameter {base!r}{hint}")
        super().set_params(**params)
        return self

    #: extra per-parameter constraints of a subclass (merged over :data:`COMMON_CONSTRAINTS`)
    _parameter_constraints: ClassVar[dict[str, Interval]] = {}

    def _validate_params(self) -> None:
        """Check every parameter before anything is trained or written: ranges (:data:`COMMON_CONSTRAINTS`,
        ``_parameter_constraints``), finite floats and bounded integers everywhere, then
        :meth:`_check_params`. Errors are :class:`WeaksegError` naming the parameter.

        Called by recipe validation (``weakseg train`` checks a recipe before writing its run
        directory) and at the start of :meth:`TorchLearner.fit`.
        """
        constraints: dict[str, Interval] = dict(COMMON_CONSTRAINTS)
        for klass in reversed(type(self).__mro__):
            constraints.update(vars(klass).get("_parameter_constraints", {}))
        for name in self._get_param_names():
            value = getattr(self, name, None)
            if name in constraints:
                constraints[name].check(name, value)
            elif isinstance(value, (float, np.floating)) and not isinstance(value, bool) and not np.isfinite(value):
                raise WeaksegError(f"{name} must be a finite number, got {value}")
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and abs(int(value)) > MAX_INT:
                raise WeaksegError(f"{name} is out of range, got {_short(value)}")
        self._check_params()

    def _check_params(self) -> None:
        """Rules between parameters or on choices (e.g. a loss name); subclasses raise :class:`WeaksegError`."""

    # -- estimator API ------------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> Learner:
        """Train on bags ``X`` (HDF5 bag paths / a bag folder, or in-memory arrays) with labels ``y``."""

    @abc.abstractmethod
    def predict_proba(self, X: Any) -> np.ndarray:
        """Bag-level class probabilities, shape ``(n_bags, 2)``."""

    def predict(self, X: Any) -> np.ndarray:
        """Bag-level hard labels (argmax of :meth:`predict_proba`)."""
        return np.asarray(self.predict_proba(X)).argmax(axis=1)

    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` finished or ``load`` restored a state (scikit-learn's ``check_is_fitted`` hook).

        Here: some fitted attribute (public, ending in ``_``) exists, as scikit-learn checks by default.
        :class:`TorchLearner` is stricter, since the engine sets ``module_`` before training.
        """
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise WeaksegError(f"{type(self).__name__} is not fitted yet: call fit() or load()")

    # -- persistence --------------------------------------------------------------------
    def _fitted_state(self) -> dict[str, Any]:
        """Plain-typed fitted state (tensors, numbers, strings, lists, dicts) for :meth:`save`."""
        return {}

    def _restore_fitted_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_fitted_state`."""

    def save(self, path: str | Path) -> Path:
        """Write hyperparameters and fitted state to ``path`` atomically (torch format).

        ``training_resolution_`` (tile size, µm/px, level and downsample of the training bags, set by
        :func:`weakseg.api.train`) is saved along and restored by :meth:`load`.
        """
        import torch

        from ..atomic import atomic_path

        self._check_fitted()
        payload = {"format": SAVE_FORMAT, "learner": self.name, "params": self.get_params(deep=False),
                   "state": self._fitted_state()}
        if getattr(self, "training_resolution_", None) is not None:  # recorded by weakseg.api.train
            payload["training_resolution"] = dict(self.training_resolution_)
        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Learner:
        """Load a learner saved by :meth:`save` (weights loaded with ``weights_only=True``)."""
        from ..engine.checkpoint import read_torch_file

        path = Path(path)
        payload = read_torch_file(path, what="learner file")
        if (not isinstance(payload, dict) or payload.get("format") != SAVE_FORMAT
                or not isinstance(payload.get("learner"), str) or not isinstance(payload.get("params"), dict)
                or not isinstance(payload.get("state"), dict)):
            raise WeaksegError(f"{path}: not a weakseg learner file (expected format {SAVE_FORMAT!r})")
        try:
            renamed = getattr(LEARNERS.get(payload["learner"]), "_renamed_params", {})
            params = {renamed.get(k, k): v for k, v in payload["params"].items()}  # files saved before a rename
            learner = create_learner(payload["learner"], **params)
        except WeaksegError as err:
            raise WeaksegError(f"{path}: {err}") from None
        if cls is not Learner and not isinstance(learner, cls):
            raise WeaksegError(f"{path}: holds a {type(learner).__name__}, not a {cls.__name__}")
        resolution = payload.get("training_resolution")
        if isinstance(resolution, dict):
            learner.training_resolution_ = resolution
        try:
            learner._restore_fitted_state(payload["state"])
        except WeaksegError as err:
            raise WeaksegError(f"{path}: {err}") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # state that does not fit the learner
            raise WeaksegError(f"{path}: the saved state does not fit {type(learner).__name__} "
                               f"({type(err).__name__}: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''})"
                               ) from None
        return learner


class TorchLearner(ResumableFitMixin, Learner):
    """A learner whose ``fit`` runs :class:`weakseg.engine.Trainer` over the hooks below.

    Its constructor exposes every :class:`~weakseg.engine.TrainConfig` setting as a parameter
    (with the learner's own defaults); ``fit`` hands them to the trainer.
    """

    #: validation metric that selects the best checkpoint and drives early stopping
    monitor: ClassVar[str] = "slide_auc"
    monitor_mode: ClassVar[str] = "max"

    def fit(self, X: Any, y: Any = None, *, X_val: Any = None, y_val: Any = None,
            run_dir: str | Path | None = None, resume: Resume = False) -> TorchLearner:
        """Train; with ``run_dir`` every epoch is checkpointed there and ``resume`` continues a run
        (``"auto"``: when a checkpoint exists)."""
        from ..engine import Trainer

        self._validate_params()
        train = self.prepare_data(X, y)
        val = self.prepare_data(X_val, y_val) if X_val is not None else None
        trainer = Trainer(self._train_config(), monitor=self.monitor, monitor_mode=self.monitor_mode,
                          run_dir=run_dir, resume=resume)
        vars(self).pop("fitted_", None)  # from here on a failed fit leaves the learner unfitted
        self._fitting = True  # validation inside the loop predicts with the module being trained
        try:
            result = trainer.fit(self, train, val)
        finally:
            del self._fitting
        self._set_fitted(result)
        return self

    def _train_config(self) -> TrainConfig:
        return TrainConfig.from_params(self.get_params(deep=False))

    def _validate_params(self) -> None:
        """:meth:`Learner._validate_params`, then the engine's checks of the training settings."""
        super()._validate_params()
        self._train_config()

    def param_groups(self, module: Any) -> list[dict[str, Any]]:
        """Optimiser parameter groups: one group of every parameter (override for discriminative learning rates)."""
        return [{"params": list(module.parameters())}]

    def bind_module(self, module: Any, device: Any, info: dict[str, Any]) -> None:
        """The trainer's module: the hooks (``training_step``, ``evaluate``) use ``module_`` and ``device_``."""
        self.module_, self.device_, self.data_info_ = module, device, info

    def _set_fitted(self, result: TrainResult) -> None:
        self.bind_module(result.module, result.device, result.data_info)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.fitted_ = True

    def __sklearn_is_fitted__(self) -> bool:
        """True once ``fit`` has returned or a saved state was restored (``fitted_``), and while ``fit``
        runs (validation predicts); ``module_``/``device_``/``data_info_`` alone do not count: they
        are bound before the first epoch, so a fit that failed leaves them behind."""
        return bool(vars(self).get("fitted_", False) or vars(self).get("_fitting", False))

    # -- hooks --------------------------------------------------------------------------
    @abc.abstractmethod
    def prepare_data(self, X: Any, y: Any = None) -> Any:
        """Wrap ``X``/``y`` into the data object the other hooks consume."""

    def data_info(self, data: Any) -> dict[str, Any]:
        """Plain-typed facts about the training data that :meth:`build_module` needs."""
        return {}

    @abc.abstractmethod
    def build_module(self, info: dict[str, Any]):
        """Create the ``torch.nn.Module`` to train from :meth:`data_info` (bound as ``module_`` by :meth:`bind_module`)."""

    @abc.abstractmethod
    def train_batches(self, data: Any, epoch: int, rng: np.random.Generator) -> Iterable[Any]:
        """Batches of one training epoch (already on ``self.device_``).

        Return a sized iterable (one with ``len()``) where possible: per-iteration schedules
        (``cosine``, ``poly``) need the epoch length and otherwise update once per epoch.
        """

    @abc.abstractmethod
    def training_step(self, batch: Any) -> Any:
        """Forward pass and loss for one batch: a scalar tensor or a :class:`StepOutput`."""

    @abc.abstractmethod
    def evaluate(self, data: Any) -> dict[str, float]:
        """Validation metrics on ``data`` (never the training loss); must include ``monitor``."""

    # -- persistence --------------------------------------------------------------------
    def _fitted_state(self) -> dict[str, Any]:
        return {"module": self.module_.state_dict(), "data_info": self.data_info_}

    def _restore_fitted_state(self, state: dict[str, Any]) -> None:
        import torch

        self.data_info_ = state["data_info"]
        self._restoring = True  # build_module may skip loading pretrained weights: the saved state replaces them
        try:
            self.module_ = self.build_module(self.data_info_)
        finally:
            del self._restoring
        self.module_.load_state_dict(state["module"])
        self.module_.eval()
        self.device_ = torch.device("cpu")
        self.fitted_ = True
