"""HoVer-Net backbone and learners (weakseg.models.hovernet, weakseg.learners.nuclei) on tiny synthetic nuclei."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from weakseg.capabilities import learner_tags
from weakseg.errors import WeaksegError
from weakseg.learners import Learner, create_learner
from weakseg.learners.nuclei import HoverNetSeg, _sobel_torch
from weakseg.models import create_backbone
from weakseg.models.hovernet import HV, NP
from weakseg.nuclei import hv_maps
from weakseg.nuclei.data import NucleiImage, downsample_image, drop_instances

TINY = dict(backbone="hovernet_tiny", downsample=1, steps_per_epoch=3, batch_size=2, max_epochs=2, device="cpu",
            augment="none", random_state=0)


def _nuclei_image(seed: int, side: int = 96) -> NucleiImage:
    """Purple discs (some touching) on pink: instance labels 1..n."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    inst = np.zeros((side, side), np.int32)
    k = 0
    for _ in range(12):
        cy, cx, r = rng.uniform(8, side - 8), rng.uniform(8, side - 8), rng.uniform(4, 7)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (inst == 0)
        if disc.sum() > 10:
            k += 1
            inst[disc] = k
    rgb = np.empty((side, side, 3), np.uint8)
    rgb[:] = (230, 170, 200)
    rgb[inst > 0] = (90, 50, 150)
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    return NucleiImage(f"img{seed}", rgb, inst)


def test_backbone_outputs_np_hv_and_optional_nc():
    net = create_backbone("hovernet_tiny").eval()
    with torch.no_grad():
        y = net(torch.zeros(2, 3, 64, 64))
    assert y.shape == (2, 4, 64, 64) and y[:, NP].shape[1] == 2 and y[:, HV].shape[1] == 2
    typed = create_backbone("hovernet_tiny", num_classes=3)
    assert typed(torch.zeros(1, 3, 64, 64)).shape == (1, 7, 64, 64)
    assert net.default_cfg.in_size == 64 and net.default_cfg.out_size == 48
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.zeros(1, 3, 50, 64))


def test_msge_is_zero_for_a_perfect_prediction_and_positive_otherwise():
    learner = create_learner("hovernet_seg", **TINY)
    target = torch.from_numpy(hv_maps(_nuclei_image(0).instances)[None])
    focus = target.abs().sum(1) > 0
    mse, msge = learner._hv_loss(target.clone(), target, None, focus)
    assert float(mse) == 0.0 and float(msge) == 0.0
    mse, msge = learner._hv_loss(torch.zeros_like(target), target, None, focus)
    assert float(mse) > 0 and float(msge) > 0
    kx = _sobel_torch()[0, 0]
    ramp = torch.arange(9.0).repeat(9, 1)[None, None]
    assert torch.allclose(torch.nn.functional.conv2d(ramp, kx[None, None])[0, 0], torch.tensor(1.0))


def test_drop_instances_keeps_a_fraction_and_marks_only_them_labelled():
    item = _nuclei_image(1)
    n = len(np.unique(item.instances)) - 1
    weak = drop_instances(item, 0.5, seed=0)
    kept = np.unique(weak.instances)[1:]
    assert len(kept) == round(0.5 * n) and set(kept) <= set(np.unique(item.instances))
    assert (weak.labelled == (weak.instances > 0)).all()
    assert drop_instances(item, 0.5, seed=0).instances.tolist() == weak.instances.tolist()
    with pytest.raises(WeaksegError, match="keep"):
        drop_instances(item, 0.0)
    small = downsample_image(item, 2)
    assert small.rgb.shape == (48, 48, 3) and small.instances.shape == (48, 48)


@pytest.mark.parametrize("name", ["hovernet_seg", "hovernet_pu"])
def test_learners_fit_predict_save_load(tmp_path, name, one_thread):
    train = [_nuclei_image(s) for s in range(3)]
    if name == "hovernet_pu":
        train = [drop_instances(t, 0.5, seed=0) for t in train]
    learner = create_learner(name, **TINY)
    assert learner_tags(learner).pixel_maps and learner.supervision == ("pu" if name == "hovernet_pu" else "full")
    learner.fit(train, X_val=[_nuclei_image(9)])
    assert len(learner.history_) == 2 and "val_pq" in learner.history_[0]
    if name == "hovernet_pu":
        assert 0.0 < learner.prior_ < 1.0 and learner.data_info_["prior_method"] == "hematoxylin"
    test = _nuclei_image(7)
    labels = learner.predict_instances([test])[0]
    assert labels.shape == test.instances.shape and labels.dtype == np.int32
    prob, hv = learner.predict_maps(test.rgb)
    assert prob.shape == (96, 96) and hv.shape == (2, 96, 96) and 0 <= prob.min() <= prob.max() <= 1
    tiles = learner.predict_tiles(np.stack([test.rgb[:64, :64]] * 2))
    assert tiles.shape == (2, 64, 64)
    learner.save(tmp_path / "m.pt")
    again = Learner.load(tmp_path / "m.pt")
    np.testing.assert_allclose(again.predict_maps(test.rgb)[0], prob, atol=1e-5)
    assert not hasattr(clone(learner), "module_")


def test_images_smaller_than_the_window_are_refused():
    tiny = NucleiImage("small", np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40), np.int32))
    with pytest.raises(WeaksegError, match="smaller than the 64-px training window"):
        HoverNetSeg(**TINY).fit([tiny])


def test_a_segmentation_backbone_is_refused():
    with pytest.raises(WeaksegError, match="not a HoVer-Net"):
        create_learner("hovernet_seg", **{**TINY, "backbone": "unet_tiny"}).fit([_nuclei_image(0)])


def _write_nuclei_folder(root, n=4, side=256):
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "instances").mkdir()
    for s in range(n):
        item = _nuclei_image(s, side=side)
        Image.fromarray(item.rgb).save(root / "images" / f"t{s}.png")
        Image.fromarray(item.instances.astype(np.uint16)).save(root / "instances" / f"t{s}.png")
    return root


@pytest.mark.slow
def test_weaken_and_train_recipes_from_the_cli(tmp_path):
    """`weakseg weaken --mode pu` on a nuclei folder, then both HoVer-Net recipes' tiny profiles through `weakseg train`."""
    from typer.testing import CliRunner

    from weakseg.cli.main import app
    from weakseg.nuclei.data import load_nuclei_folder

    full = _write_nuclei_folder(tmp_path / "nuclei")
    runner = CliRunner()
    res = runner.invoke(app, ["weaken", str(full), str(tmp_path / "weak"), "--mode", "pu", "--positive-fraction", "0.5"])
    assert res.exit_code == 0, res.output
    weak = load_nuclei_folder(tmp_path / "weak")
    truth = load_nuclei_folder(full)
    assert all(w.labelled is not None and (w.instances > 0).sum() < (t.instances > 0).sum() for w, t in zip(weak, truth))
    assert (tmp_path / "weak" / "truth" / "t0.png").resolve() == (full / "instances" / "t0.png").resolve()
    for recipe, data in (("hovernet_monuseg", full), ("hovernet_pu_monuseg", tmp_path / "weak")):
        out = tmp_path / recipe
        res = runner.invoke(app, ["train", f"recipes/{recipe}.yaml", "--profile", "tiny", "--out", str(out),
                                  "--set", f"data.bags={data}"])
        assert res.exit_code == 0, res.output
        learner = Learner.load(out / "model.pt")
        assert learner.predict_instances([truth[0].rgb])[0].shape == truth[0].instances.shape
    bad = runner.invoke(app, ["weaken", str(full), str(tmp_path / "w2"), "--mode", "slide"])
    assert bad.exit_code == 2 and "--mode pu" in bad.output


def test_msge_matches_a_hand_computation():
    """H rising by a per pixel along x, V zero, target zero: inside the focus the Sobel d/dx of H is a and
    d/dy of V is 0, so MSGE = mean over both channels = a² / 2; MSE over the focus = mean(H²) / 2."""
    learner = create_learner("hovernet_seg", **TINY)
    a = 0.1
    pred = torch.zeros(1, 2, 32, 32)
    pred[0, 0] = a * torch.arange(32.0).repeat(32, 1)
    focus = torch.zeros(1, 32, 32, dtype=torch.bool)
    focus[:, 8:24, 8:24] = True  # away from the zero padding of the convolution
    mse, msge = learner._hv_loss(pred, torch.zeros_like(pred), focus, focus)
    assert float(msge) == pytest.approx(a * a / 2, rel=1e-5)
    assert float(mse) == pytest.approx(float((pred[0, 0][8:24, 8:24] ** 2).mean()) / 2, rel=1e-5)
