"""The training engine on tiny in-memory learners: determinism, resume, best epoch, schedules, failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import weakseg  # noqa: F401  (applies the torchvision shim first)
from weakseg.engine import LRSchedule, NonFiniteLossError, Trainer, TrainingError
from weakseg.errors import WeaksegError
from weakseg.learners.base import StepOutput, TorchLearner, register_learner


def make_bags(seed: int = 0, n: int = 12, dim: int = 4) -> tuple[list[np.ndarray], np.ndarray]:
    """Feature bags whose positive bags hold a few shifted instances."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    bags = []
    for label in y:
        x = rng.normal(size=(int(rng.integers(5, 9)), dim)).astype(np.float32)
        if label:
            x[:2, 0] += 3.0
        bags.append(x)
    return bags, y


@register_learner("test_engine_linear")
class ToyLinear(TorchLearner):
    """Max-pooled linear MIL with dropout (so resume must restore torch's RNG)."""

    supervision = "slide"

    def __init__(self, max_epochs: int = 3, lr: float = 0.05, optimizer: str = "adamw", scheduler: str = "none",
                 scheduler_params: dict | None = None, patience: int | None = None, min_epochs: int = 0,
                 grad_clip: float | None = None, random_state: int = 0, crash_at_epoch: int | None = None,
                 nan_at: tuple[int, int] | None = None) -> None:
        self.max_epochs = max_epochs
        self.lr = lr
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_params = scheduler_params
        self.patience = patience
        self.min_epochs = min_epochs
        self.grad_clip = grad_clip
        self.random_state = random_state
        self.crash_at_epoch = crash_at_epoch
        self.nan_at = nan_at

    def prepare_data(self, X, y=None):
        return list(X), np.asarray(y)

    def data_info(self, data):
        return {"dim": int(data[0][0].shape[1])}

    def build_module(self, info):
        return torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(info["dim"], 1))

    def train_batches(self, data, epoch, rng):
        if epoch == self.crash_at_epoch:
            raise RuntimeError("simulated crash")
        X, y = data
        order = rng.permutation(len(X))
        return [(epoch, i, torch.from_numpy(X[j]), torch.tensor(float(y[j]))) for i, j in enumerate(order)]

    def training_step(self, batch):
        epoch, step, x, label = batch
        logit = self.module_(x).max()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, label)
        if self.nan_at == (epoch, step):
            loss = loss * float("nan")
        return StepOutput(loss=loss, logs={"logit": logit.detach()})

    def _scores(self, X):
        with torch.no_grad():
            return np.array([float(self.module_(torch.from_numpy(x)).max()) for x in X])

    def evaluate(self, data):
        from sklearn.metrics import roc_auc_score

        X, y = data
        return {"slide_auc": float(roc_auc_score(y, self._scores(X)))}

    def predict_proba(self, X):
        p = 1.0 / (1.0 + np.exp(-self._scores(X)))
        return np.stack([1 - p, p], axis=1)

    def instance_scores(self, bag):
        with torch.no_grad():
            return self.module_(torch.from_numpy(bag)).squeeze(1).numpy()


class Scripted(ToyLinear):
    """Validation metric follows a fixed script, so the best epoch is known in advance."""

    script = (0.5, 0.9, 0.7, 0.6, 0.55, 0.52, 0.51, 0.5)

    def evaluate(self, data):
        epoch = len(getattr(self, "_seen", []))
        self._seen = [*getattr(self, "_seen", []), epoch]
        return {"slide_auc": self.script[epoch]}


class ConstantGrad(TorchLearner):
    """One parameter ``w`` with d(loss)/dw = 1, so each SGD step moves ``w`` by exactly -lr_effective."""

    supervision = "slide"

    def __init__(self, max_epochs: int = 1, lr: float = 0.1, optimizer: str = "sgd", momentum: float = 0.0,
                 scheduler: str = "none", scheduler_params: dict | None = None, grad_clip: float | None = None,
                 scales: tuple[float, ...] = (1.0,), grad: float = 1.0) -> None:
        self.max_epochs = max_epochs
        self.lr = lr
        self.optimizer = optimizer
        self.momentum = momentum
        self.scheduler = scheduler
        self.scheduler_params = scheduler_params
        self.grad_clip = grad_clip
        self.scales = scales
        self.grad = grad

    def prepare_data(self, X, y=None):
        return X

    def build_module(self, info):
        m = torch.nn.Module()
        m.w = torch.nn.Parameter(torch.zeros(()))
        return m

    def train_batches(self, data, epoch, rng):
        return list(self.scales)

    def training_step(self, scale):
        self.trace_ = [*getattr(self, "trace_", []), float(self.module_.w.detach())]
        return StepOutput(loss=self.grad * self.module_.w, lr_scale=scale)

    def evaluate(self, data):
        return {"slide_auc": 0.5}

    def predict_proba(self, X):
        raise NotImplementedError

    def instance_scores(self, bag):
        raise NotImplementedError


def weights(learner) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in learner.module_.state_dict().items()}


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def drop_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.fixture(scope="module")
def data():
    X, y = make_bags(0)
    Xv, yv = make_bags(1, n=8)
    return X, y, Xv, yv


def test_same_seed_same_run_and_other_seed_differs(data):
    X, y, Xv, yv = data
    a = ToyLinear(random_state=3).fit(X, y, X_val=Xv, y_val=yv)
    b = ToyLinear(random_state=3).fit(X, y, X_val=Xv, y_val=yv)
    c = ToyLinear(random_state=4).fit(X, y, X_val=Xv, y_val=yv)
    assert drop_seconds(a.history_) == drop_seconds(b.history_)
    assert same_weights(weights(a), weights(b))
    assert not same_weights(weights(a), weights(c))


def test_resume_after_crash_equals_uninterrupted_run(data, tmp_path):
    X, y, Xv, yv = data
    params = {"max_epochs": 3, "scheduler": "cosine", "random_state": 7, "patience": 5}
    full = ToyLinear(**params).fit(X, y, X_val=Xv, y_val=yv, run_dir=tmp_path / "full")
    crashed = ToyLinear(**params, crash_at_epoch=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(X, y, X_val=Xv, y_val=yv, run_dir=tmp_path / "resumed")
    resumed = ToyLinear(**params).fit(X, y, X_val=Xv, y_val=yv, run_dir=tmp_path / "resumed", resume=True)
    assert len(resumed.history_) == 3
    assert drop_seconds(resumed.history_) == drop_seconds(full.history_)
    assert same_weights(weights(resumed), weights(full))
    csv = pd.read_csv(tmp_path / "resumed" / "metrics.csv")
    assert csv["epoch"].tolist() == [0, 1, 2]
    assert json.loads((tmp_path / "resumed" / "env.json").read_text())["resumed_at_epoch"] == 1


def test_run_dir_refuses_overwrite_and_resume_needs_checkpoint(data, tmp_path):
    X, y, _, _ = data
    ToyLinear(max_epochs=1).fit(X, y, run_dir=tmp_path / "run")
    with pytest.raises(WeaksegError, match="already holds a training checkpoint"):
        ToyLinear(max_epochs=1).fit(X, y, run_dir=tmp_path / "run")
    with pytest.raises(WeaksegError, match="nothing to resume"):
        ToyLinear(max_epochs=1).fit(X, y, run_dir=tmp_path / "empty", resume=True)


def test_best_epoch_is_chosen_by_validation_metric_and_restored(data, tmp_path):
    X, y, Xv, yv = data
    run = tmp_path / "run"
    learner = Scripted(max_epochs=4).fit(X, y, X_val=Xv, y_val=yv, run_dir=run)
    two = Scripted(max_epochs=2).fit(X, y, X_val=Xv, y_val=yv)  # stops right after the best epoch
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 1 and best["value"] == pytest.approx(0.9)
    assert same_weights(weights(learner), best["module"])
    assert same_weights(weights(learner), weights(two))
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["run"]["epoch"] == 4 and not same_weights(last["module"], best["module"])


def test_without_validation_the_last_epoch_is_best(data):
    X, y, _, _ = data
    learner = ToyLinear(max_epochs=2).fit(X, y)
    assert [r["epoch"] for r in learner.history_] == [0, 1]
    assert not any(k.startswith("val_") for k in learner.history_[-1])


@pytest.mark.parametrize(("patience", "min_epochs", "n_epochs"), [(2, 0, 4), (2, 6, 6), (None, 0, 8)])
def test_early_stopping(data, patience, min_epochs, n_epochs):
    X, y, Xv, yv = data
    learner = Scripted(max_epochs=8, patience=patience, min_epochs=min_epochs).fit(X, y, X_val=Xv, y_val=yv)
    assert len(learner.history_) == n_epochs


def test_nan_loss_stops_with_clear_message(data):
    X, y, _, _ = data
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 1, step 2 \(global step 14\); last finite loss: \d"):
        ToyLinear(max_epochs=3, nan_at=(1, 2)).fit(X, y)


def test_missing_monitored_metric_is_an_error(data):
    X, y, Xv, yv = data

    class NoAuc(ToyLinear):
        def evaluate(self, data):
            return {"accuracy": 1.0}

    with pytest.raises(TrainingError, match=r"returned no 'slide_auc'.*\['accuracy'\]"):
        NoAuc(max_epochs=1).fit(X, y, X_val=Xv, y_val=yv)


def test_lr_scale_applies_to_its_step_only():
    learner = ConstantGrad(lr=0.1, scales=(1.0, 3.0, 1.0, -1.0)).fit(None)
    steps = np.diff([*learner.trace_, float(learner.module_.w.detach())])
    np.testing.assert_allclose(steps, [-0.1, -0.3, -0.1, 0.1], rtol=1e-6)
    assert learner.history_[-1]["lr"] == pytest.approx(0.1)


def test_grad_clip_bounds_the_step():
    learner = ConstantGrad(lr=0.1, grad=50.0, grad_clip=1.0, scales=(1.0, 1.0)).fit(None)
    np.testing.assert_allclose(np.diff([*learner.trace_, float(learner.module_.w.detach())]), [-0.1, -0.1], rtol=1e-5)


def test_poly_schedule_drives_the_optimiser_per_iteration():
    learner = ConstantGrad(lr=0.1, max_epochs=2, scheduler="poly", scales=(1.0,) * 4).fit(None)
    steps = -np.diff([*learner.trace_, float(learner.module_.w.detach())])
    expected = [0.1 * (1 - k / 8) ** 0.9 for k in range(8)]
    np.testing.assert_allclose(steps, expected, rtol=1e-5)
    assert learner.history_[0]["lr"] == pytest.approx(expected[3])


def test_schedule_curves():
    cos = LRSchedule("cosine", {"min_lr_factor": 0.1}, max_epochs=10, lr=1.0)
    assert cos.factor(0, 0, 5, 0) == pytest.approx(1.0)
    assert cos.factor(5, 0, 5, 25) == pytest.approx(0.55)
    assert cos.factor(2, 3, None, 13) == cos.factor(2, 0, None, 10)  # unknown length: per-epoch
    per_epoch = LRSchedule("poly", {"interval": "epoch"}, max_epochs=4, lr=1.0)
    assert [per_epoch.factor(e, 1, 5, 0) for e in range(4)] == pytest.approx([(1 - e / 4) ** 0.9 for e in range(4)])
    step = LRSchedule("step", {"step_size": 2, "gamma": 0.5}, max_epochs=6, lr=1.0)
    assert [step.factor(e, 0, 3, 0) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_cyclic_matches_torch_triangular():
    sched = LRSchedule("cyclic", {"max_lr": 0.2, "step_size_up": 3, "step_size_down": 5}, max_epochs=1, lr=0.002)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.002, momentum=0.9)
    ref = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.002, max_lr=0.2, step_size_up=3, step_size_down=5)
    expected = []
    for _ in range(20):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert [0.002 * sched.factor(0, t, None, t) for t in range(20)] == pytest.approx(expected)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"optimizer": "adamm"}, "unknown optimizer 'adamm'; did you mean 'adam'"),
    ({"scheduler": "cosin"}, "unknown scheduler 'cosin'; did you mean 'cosine'"),
    ({"scheduler": "poly", "scheduler_params": {"powr": 1}}, "no parameter 'powr'; did you mean 'power'"),
    ({"scheduler": "poly", "scheduler_params": {"power": "x"}}, "'power': expected float, got 'x'"),
    ({"max_epochs": 0}, "max_epochs must be a finite integer >= 1"),
    ({"amp": "yes"}, "amp must be"),
    ({"resume": True}, "needs a run_dir"),
])
def test_trainer_validates_its_settings_eagerly(kwargs, message):
    with pytest.raises(WeaksegError, match=message):
        Trainer(**kwargs)


def test_run_dir_records(data, tmp_path):
    X, y, Xv, yv = data
    ToyLinear(max_epochs=2).fit(X, y, X_val=Xv, y_val=yv, run_dir=tmp_path)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics.columns) == ["epoch", "train_loss", "train_logit", "val_slide_auc", "lr", "seconds"]
    assert len(metrics) == 2 and metrics["train_loss"].map(math.isfinite).all()
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["device"] == "cpu" and env["versions"]["torch"] == torch.__version__
    assert {"platform", "git_commit", "command", "started"} <= env.keys()


def test_fitted_learner_saves_and_loads(data, tmp_path):
    X, y, Xv, yv = data
    learner = ToyLinear(max_epochs=1).fit(X, y)
    loaded = ToyLinear.load(learner.save(tmp_path / "model.pt"))
    np.testing.assert_allclose(loaded.predict_proba(Xv), learner.predict_proba(Xv))


def test_git_commit_falls_back_to_reading_git_head(tmp_path):
    from weakseg.engine.rundir import _read_git_head

    (tmp_path / ".git" / "refs" / "heads").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".git" / "refs" / "heads" / "main").write_text("abc123\n")
    (tmp_path / "pkg").mkdir()
    assert _read_git_head(tmp_path / "pkg") == "abc123"


def test_unsized_batches_fall_back_to_per_epoch_schedule(caplog):
    class Unsized(ConstantGrad):
        def train_batches(self, data, epoch, rng):
            return iter(self.scales)

    with caplog.at_level("WARNING", logger="weakseg.engine"):
        learner = Unsized(lr=0.1, max_epochs=2, scheduler="poly", scales=(1.0,) * 2).fit(None)
    steps = -np.diff([*learner.trace_, float(learner.module_.w.detach())])
    np.testing.assert_allclose(steps, [0.1, 0.1, 0.1 * 0.5**0.9, 0.1 * 0.5**0.9], rtol=1e-5)
    assert "has no len(): the poly schedule updates once per epoch" in caplog.text
