"""The learner ↔ engine contract: scikit-learn estimators, declared capabilities, one list of
training settings, a trainer that returns its result instead of writing the learner's state."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone

import weakseg
from weakseg.capabilities import PixelPredictorMixin, learner_tags
from weakseg.engine import Trainer, TrainConfig, TrainResult, resolve_resume
from weakseg.errors import WeaksegError
from weakseg.learners import LEARNERS, Learner, TorchLearner, list_learners, register_learner

PACKAGE = Path(weakseg.__file__).parent
#: the learners weakseg ships (other test modules register throw-away learners of their own)
BUILTIN = [n for n in list_learners() if LEARNERS.get(n).__module__.startswith("weakseg.")]


@pytest.mark.parametrize("name", BUILTIN)
def test_every_learner_is_a_cloneable_estimator_with_keyword_only_params(name):
    cls = LEARNERS.get(name)
    assert issubclass(cls, BaseEstimator)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), name
    learner = cls(random_state=3) if "random_state" in cls._get_param_names() else cls()
    copy = clone(learner)
    assert copy is not learner and copy.get_params() == learner.get_params()
    copy.set_params(random_state=5)
    assert learner.random_state == 3


@pytest.mark.parametrize("name", [n for n in BUILTIN if issubclass(LEARNERS.get(n), TorchLearner)])
def test_torch_learners_expose_every_training_setting(name):
    """The settings are declared once (TrainConfig); each learner's signature must carry all of them."""
    missing = set(TrainConfig.names()) - set(LEARNERS.get(name)._get_param_names())
    assert not missing, f"{name} lacks training settings {sorted(missing)}"


def test_no_other_list_of_training_settings_in_the_package():
    names = set(TrainConfig.names())
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(strings & names) >= 5:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


def test_capabilities_are_declared_by_mixins():
    assert learner_tags(LEARNERS.get("nnpu_seg")).pixel_maps
    assert learner_tags(LEARNERS.get("mil_seg")).pixel_maps and learner_tags(LEARNERS.get("mil_seg")).resumable
    assert not learner_tags(LEARNERS.get("topk_mil")).pixel_maps
    assert learner_tags(LEARNERS.get("abmil")).attention and not learner_tags(LEARNERS.get("topk_mil")).attention
    assert all(learner_tags(LEARNERS.get(n)).instance_scores for n in BUILTIN)


def test_an_undeclared_capability_is_refused_at_registration():
    class Sneaky(Learner):
        supervision = "full"

        def fit(self, X, y=None):
            return self

        def predict_proba(self, X):
            return np.zeros((1, 2))

        def instance_scores(self, bag):
            return np.zeros(1)

        def predict_tiles(self, tiles):
            return np.zeros(tiles.shape[:3])

    with pytest.raises(WeaksegError, match="PixelPredictorMixin"):
        register_learner("sneaky_undeclared")(Sneaky)

    class Declared(PixelPredictorMixin, Sneaky):
        pass

    register_learner("declared_pixels_test")(Declared)
    assert learner_tags(Declared).pixel_maps
    LEARNERS._entries.pop("declared_pixels_test")


class _Frozen:
    """A Trainable whose attributes only its own bind_module may set: the trainer must not write them."""

    monitor, monitor_mode = "score", "max"

    def __init__(self):
        object.__setattr__(self, "_binding", False)
        object.__setattr__(self, "bound", None)

    def __setattr__(self, key, value):
        if not self._binding:
            raise AssertionError(f"the trainer set {key!r} on the learner")
        object.__setattr__(self, key, value)

    def data_info(self, data):
        return {"n": len(data)}

    def build_module(self, info):
        return torch.nn.Linear(1, 1)

    def param_groups(self, module):
        return [{"params": list(module.parameters())}]

    def bind_module(self, module, device, info):
        object.__setattr__(self, "_binding", True)
        self.bound = (module, device, info)
        object.__setattr__(self, "_binding", False)

    def train_batches(self, data, epoch, rng):
        return [torch.tensor(data, dtype=torch.float32)[:, None]]

    def training_step(self, batch):
        module = self.bound[0]
        return ((module(batch) - 1.0) ** 2).mean()

    def evaluate(self, data):
        module = self.bound[0]
        return {"score": -float(((module(torch.tensor(data, dtype=torch.float32)[:, None]) - 1) ** 2).mean())}


def test_trainer_returns_a_result_and_leaves_the_learner_alone(tmp_path):
    learner = _Frozen()
    result = Trainer(max_epochs=3, lr=0.1, device="cpu", monitor="score").fit(learner, [0.0, 1.0], [0.5])
    assert isinstance(result, TrainResult)
    assert len(result.history) == 3 and result.best_epoch is not None
    assert learner.bound[0] is result.module and result.data_info == {"n": 2}


def test_trainer_takes_a_config_or_keywords_not_both():
    with pytest.raises(WeaksegError, match="not both"):
        Trainer(TrainConfig(), max_epochs=2)
    with pytest.raises(WeaksegError, match="unknown training setting"):
        Trainer(max_epoch=2)


def test_resume_auto_is_decided_in_one_place(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    assert resolve_resume("auto", ckpt) is False
    assert resolve_resume(False, ckpt) is False
    with pytest.raises(WeaksegError, match="nothing to resume"):
        resolve_resume(True, ckpt)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    assert resolve_resume("auto", ckpt) is True and resolve_resume(True, ckpt) is True
    with pytest.raises(WeaksegError, match="already holds a training checkpoint"):
        resolve_resume(False, ckpt)
    with pytest.raises(WeaksegError, match="resume must be"):
        resolve_resume("yes", ckpt)


def test_bad_training_setting_fails_in_validation_before_fit():
    learner = weakseg.create_learner("supervised_seg", scheduler="cosin")
    with pytest.raises(WeaksegError, match="did you mean 'cosine'"):
        learner._validate_params()


def test_registries_take_one_decorator_form():
    from weakseg.models import register_backbone

    with pytest.raises(WeaksegError, match="explicit name"):
        register_backbone(lambda **kw: torch.nn.Identity())


@pytest.mark.parametrize("name", ["unet_tiny", "transunet_tiny"])
def test_forward_features_is_a_list_of_maps_shallowest_first(name):
    from weakseg.models import create_backbone

    net = create_backbone(name).eval()
    with torch.no_grad():
        feats = net.forward_features(torch.zeros(1, 3, 64, 64))
    assert isinstance(feats, list) and all(isinstance(f, torch.Tensor) for f in feats)
    sides = [f.shape[-1] for f in feats]
    assert sides == sorted(sides, reverse=True)


def test_one_name_for_pretrained_weights():
    """``pretrained_path`` everywhere: learners, backbone factories, encoders, the feature cache."""
    from weakseg.encoders import TimmEncoder, create_encoder, resolve_weights
    from weakseg.features import FeatureExtractor, embed_bags
    from weakseg.models import BACKBONES, list_backbones

    funcs = [create_encoder, resolve_weights, TimmEncoder.__init__, FeatureExtractor.__init__, embed_bags]
    funcs += [BACKBONES.get(n) for n in list_backbones()] + [LEARNERS.get(n).__init__ for n in BUILTIN]
    for fn in funcs:
        names = set(inspect.signature(fn).parameters)
        assert not names & {"checkpoint", "checkpoint_path", "weights_path"}, fn.__qualname__
    assert "pretrained_path" in inspect.signature(LEARNERS.get("abmil").__init__).parameters
    assert LEARNERS.get("abmil")._renamed_params == {"checkpoint": "pretrained_path"}  # old learner files load
