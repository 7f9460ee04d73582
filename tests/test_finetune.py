"""Fine-tuning protocol (seed 001) of the segmentation learners: frozen encoder, encoder learning rate,
ignored border pixels, cyclic schedule, the finetune_unet recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import weakseg  # noqa: F401
from weakseg.data.seg import IGNORE
from weakseg.engine.optim import LRSchedule, build_optimizer, encoder_parameters, param_groups
from weakseg.engine.seeding import seed_everything
from weakseg.errors import WeaksegError
from weakseg.learners import create_learner
from weakseg.models import create_backbone
from weakseg.recipes import load_recipe
from weakseg.weaken import weaken_bags

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
T = 32
FAMILIES = {
    "unet_tiny": ({"encoder"}, {"decoder", "head"}),
    "hrnet_tiny": ({"encoder"}, {"head"}),
    "hovernet_tiny": ({"encoder"}, {"np_branch", "hv_branch"}),
    "transunet_tiny": ({"cnn", "patch_embed", "pos_embed", "blocks", "norm"}, {"conv_more", "decoder", "head"}),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_encoder_parameters_per_backbone_family(name):
    module = create_backbone(name, num_classes=2)
    enc_tops, dec_tops = FAMILIES[name]
    enc = {n.split(".", 1)[0] for n, _ in encoder_parameters(module)}
    assert enc == enc_tops
    rest = {n.split(".", 1)[0] for n, _ in module.named_parameters()} - enc
    assert dec_tops <= rest


def test_module_without_encoder_is_refused():
    with pytest.raises(WeaksegError, match="no encoder parameters"):
        encoder_parameters(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)))


def test_param_groups_give_encoder_lr_times_mult():
    module = create_backbone("unet_tiny", num_classes=2)
    groups = param_groups(module, lr=0.01, encoder_lr_mult=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["encoder"]["lr"] == pytest.approx(0.01 * 0.1) and by_name["decoder"]["lr"] == 0.01
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in module.parameters())  # every parameter exactly once
    opt = build_optimizer("sgd", groups, lr=0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.001, 0.01])


def test_cyclic_schedule_is_triangular():
    s = LRSchedule("cyclic", {"max_lr": 0.2, "step_size_up": 10, "step_size_down": 10, "interval": "epoch"},
                   max_epochs=20, lr=0.002)
    lrs = [0.002 * s.factor(e, 0, None, 0) for e in range(21)]
    assert lrs[0] == pytest.approx(0.002) and lrs[10] == pytest.approx(0.2) and lrs[20] == pytest.approx(0.002)
    assert np.all(np.diff(lrs[:11]) > 0) and np.all(np.diff(lrs[10:]) < 0)


# -- learners ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bags(tmp_path_factory, make_blob_bag) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ftbags")
    for s in range(2):
        make_blob_bag(root / "full" / f"s{s}.h5", s, grid=2, tile=T)
    weaken_bags(root / "full", root / "pu", "pu", positive_fraction=1.0, erode=0, seed=0)
    return {"supervised_seg": root / "full", "nnpu_seg": root / "pu"}


def _kw(name: str, backbone: str, **extra) -> dict:
    kw = dict(backbone=backbone, batch_size=8, device="cpu", optimizer="sgd", lr=0.05, weight_decay=1e-3,
              scheduler="none", random_state=0, **extra)
    return {**kw, "prior": 0.3} if name == "nnpu_seg" else kw


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, after: dict, keys) -> list[bool]:
    return [not torch.equal(before[k], after[k]) for k in keys]


def _one_step(learner, data, epoch: int) -> None:
    """What the trainer does for one step of ``epoch``: train mode, the epoch's batches, a step of an
    optimiser built over all parameters at the start (as weakseg.engine.Trainer builds it)."""
    module = learner.module_
    module.train()
    batch = next(iter(learner.train_batches(data, epoch, np.random.default_rng(epoch))))
    opt = learner._opt
    opt.zero_grad(set_to_none=True)
    out = learner.training_step(batch)
    (out.loss if hasattr(out, "loss") else out).backward()
    opt.step()


@pytest.mark.parametrize("name", ["supervised_seg", "nnpu_seg"])
@pytest.mark.parametrize("backbone", ["unet_tiny", "transunet_tiny"])
def test_frozen_encoder_unchanged_then_trains(bags, name, backbone):
    learner = create_learner(name, **_kw(name, backbone, freeze_encoder_epochs=1))
    data = learner.prepare_data(bags[name])
    info = learner.data_info(data)
    module = learner.build_module(info)
    learner.bind_module(module, torch.device("cpu"), info)
    learner._opt = build_optimizer("sgd", [p for p in module.parameters() if p.requires_grad], lr=0.05,
                                   weight_decay=1e-3)
    enc = [n for n, _ in encoder_parameters(module)]
    dec = [n for n, _ in module.named_parameters() if n not in set(enc)]
    enc_buffers = [n for n, _ in module.named_buffers() if n.split(".", 1)[0] in {e.split(".", 1)[0] for e in enc}]

    before = _snapshot(module)
    _one_step(learner, data, epoch=0)  # a frozen epoch
    after = _snapshot(module)
    assert not any(_changed(before, after, enc)), "a frozen encoder parameter changed"
    assert not any(_changed(before, after, enc_buffers)), "frozen encoder statistics changed"
    assert any(_changed(before, after, dec)), "the decoder did not train"
    assert all(p.grad is None for n, p in module.named_parameters() if n in set(enc))

    _one_step(learner, data, epoch=1)  # after the freeze epochs
    later = _snapshot(module)
    assert any(_changed(after, later, enc)), "the encoder did not train after the freeze epochs"
    assert all(p.requires_grad for p in module.parameters())


def test_fit_with_all_epochs_frozen_keeps_the_initial_encoder(bags):
    name = "supervised_seg"
    learner = create_learner(name, **_kw(name, "unet_tiny", freeze_encoder_epochs=2, max_epochs=2))
    seed_everything(0)  # the trainer seeds, then builds the module: the same initial weights
    data = learner.prepare_data(bags[name])
    init = _snapshot(learner.build_module(learner.data_info(data)))
    learner.fit(bags[name])
    final = learner.module_.state_dict()
    enc = [n for n in init if n.startswith("encoder.") and "num_batches_tracked" not in n]
    assert enc and not any(_changed(init, final, enc))
    assert any(_changed(init, final, [n for n in init if n.startswith(("decoder.", "head."))]))


def test_ignore_border_targets(bags):
    learner = create_learner("supervised_seg", **_kw("supervised_seg", "unet_tiny", ignore_border=4, augment=False))
    data = learner.prepare_data(bags["supervised_seg"])
    info = learner.data_info(data)
    learner.bind_module(learner.build_module(info), torch.device("cpu"), info)
    _, y = next(iter(learner.train_batches(data, 0, np.random.default_rng(0))))
    assert (y[:, :4] == IGNORE).all() and (y[:, -4:] == IGNORE).all()
    assert (y[:, :, :4] == IGNORE).all() and (y[:, :, -4:] == IGNORE).all()
    inner = y[:, 4:-4, 4:-4]
    assert ((inner == 0) | (inner == 1)).any()  # the tissue inside is kept
    too_wide = create_learner("supervised_seg", **_kw("supervised_seg", "unet_tiny", ignore_border=16))
    with pytest.raises(WeaksegError, match="ignore_border"):
        too_wide.fit(bags["supervised_seg"])


def test_parameter_checks():
    with pytest.raises(WeaksegError, match="freeze_encoder_epochs"):
        create_learner("supervised_seg", freeze_encoder_epochs=-1)._validate_params()
    learner = create_learner("nnpu_seg", encoder_lr_mult=0.1)
    learner._validate_params()
    groups = learner.param_groups(create_backbone("transunet_tiny"))
    assert groups[0]["lr"] == pytest.approx(learner.lr * 0.1)


def test_the_trainer_builds_its_optimiser_from_the_learners_groups(monkeypatch, bags):
    """Discriminative learning rates reach the optimiser: encoder at lr x encoder_lr_mult, the rest at lr."""
    import weakseg.engine.trainer as trainer_module

    seen = {}
    real = trainer_module.build_optimizer

    def spy(name, params, **kw):
        opt = real(name, params, **kw)
        seen["lrs"] = sorted({g["lr"] for g in opt.param_groups})
        raise KeyboardInterrupt  # stop once the optimiser exists

    monkeypatch.setattr(trainer_module, "build_optimizer", spy)
    learner = create_learner("supervised_seg", backbone="unet_tiny", encoder_lr_mult=0.1, lr=0.01, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        learner.fit(bags["supervised_seg"])
    assert seen["lrs"] == pytest.approx([0.001, 0.01])


@pytest.mark.parametrize("profile", [None, "tiny", "cpu"])
def test_finetune_recipe(profile):
    recipe = load_recipe("finetune_unet", profile=profile)
    learner = recipe.build_learner()
    learner._validate_params()
    assert learner.freeze_encoder_epochs >= 1 and learner.scheduler == "cyclic"
    assert learner.backbone == ("unet_resnet18" if profile is None else "unet_tiny")
    with_file = load_recipe("finetune_unet", overrides=["learner.params.pretrained_path=/x/resnet18.pth"])
    assert with_file.learner.params["pretrained_path"] == "/x/resnet18.pth"
