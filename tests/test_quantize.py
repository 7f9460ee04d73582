"""int8 post-training quantization (weakseg.quantize): closeness to fp32, refusals, ``weakseg predict --quantize``."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn as nn

import weakseg  # noqa: F401
from weakseg.errors import WeaksegError
from weakseg.learners import create_learner
from weakseg.models import create_backbone
from weakseg.quantize import check_quantize, quantize_learner, quantize_module

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

#: tolerance of a quantized backbone's logits: mean |int8 - fp32| within this fraction of mean |fp32|
REL_TOL = 0.15
#: tolerance of a fitted learner's cancer probabilities: largest |int8 - fp32| per pixel
PROB_TOL = 0.05
T = 32


def _images(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth image-like inputs (normalised scale), not white noise: what calibration sees in practice."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 3, size // 8, size // 8), generator=g) * 4 - 2
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("name", ["unet_tiny", "hrnet_tiny", "hovernet_tiny", "transunet_tiny"])
def test_static_int8_close_to_fp32(name):
    torch.manual_seed(0)
    module = create_backbone(name, num_classes=2).eval()
    calib = [_images(4, 64, seed=s) for s in range(2)]
    q = quantize_module(module, calib, mode="static", name=name)
    assert any("quantized" in type(m).__module__ for m in q.modules())  # int8 kernels in place
    assert q.default_cfg == module.default_cfg  # the backbone contract survives
    x = _images(3, 64, seed=7)
    with torch.inference_mode():
        y, yq = module(x), q(x)
    assert yq.shape == y.shape  # HoVer-Net: NP and HV channels as in fp32
    rel = float((yq - y).abs().mean() / y.abs().mean())
    assert rel < REL_TOL, f"{name}: mean relative error {rel:.3f}"
    assert all(p.dtype == torch.float32 for p in module.parameters())  # the float module is untouched


def test_dynamic_quantizes_transunet_linear_layers():
    module = create_backbone("transunet_tiny", num_classes=2).eval()
    q = quantize_module(module, mode="dynamic", name="transunet_tiny")
    kinds = {type(m).__module__ for m in q.modules()}
    assert any("quantized.dynamic" in k for k in kinds)
    x = _images(2, 64)
    with torch.inference_mode():
        y, yq = module(x), q(x)
    assert float((yq - y).abs().mean() / y.abs().mean()) < REL_TOL


def test_refusals_name_backbone_and_reason():
    with pytest.raises(WeaksegError, match=r"'unet_tiny'.*Linear"):
        quantize_module(create_backbone("unet_tiny"), mode="dynamic", name="unet_tiny")
    with pytest.raises(WeaksegError, match=r"'unet_tiny'.*calibration"):
        quantize_module(create_backbone("unet_tiny"), None, mode="static", name="unet_tiny")

    class Untraceable(nn.Module):  # data-dependent control flow and no submodule: nothing FX can trace
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.w if float(x.mean()) > 0 else -x

    with pytest.raises(WeaksegError, match=r"'odd_net' cannot be quantized statically"):
        quantize_module(Untraceable(), _images(1, 32), mode="static", name="odd_net")
    with pytest.raises(WeaksegError, match="mode"):
        quantize_module(Untraceable(), mode="int4")
    with pytest.raises(WeaksegError, match="int8"):
        check_quantize("int4")
    assert check_quantize(None) is None and check_quantize("int8") == "int8"


# -- a fitted learner ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(tmp_path_factory, make_blob_bag):
    root = tmp_path_factory.mktemp("qbags")
    paths = [make_blob_bag(root / f"s{s}.h5", s, grid=3, tile=T, n_blobs=4) for s in range(3)]
    learner = create_learner("supervised_seg", backbone="unet_tiny", batch_size=9, max_epochs=4, device="cpu",
                             optimizer="adam", lr=3e-3, scheduler="none", random_state=0)
    return learner.fit(paths), paths


def test_quantize_learner_keeps_probabilities(fitted):
    import copy

    learner, paths = fitted
    from weakseg.bags import Bag

    with Bag(paths[0]) as bag:
        tiles = bag.read_tiles(np.arange(len(bag)))
    fp32 = learner.predict_tiles(tiles)
    q = quantize_learner(copy.deepcopy(learner), paths)
    assert q.quantized_ == "int8-static"
    assert any("quantized" in type(m).__module__ for m in q.module_.modules())
    int8 = q.predict_tiles(tiles)
    assert np.abs(int8 - fp32).max() < PROB_TOL
    assert ((int8 > 0.5) == (fp32 > 0.5)).mean() > 0.98


def test_quantize_learner_refuses_non_segmentation_learners(fitted):
    _, paths = fitted
    with pytest.raises(WeaksegError, match="segmentation and HoVer-Net learners"):
        quantize_learner(create_learner("abmil"), paths)


def test_cli_quantize_flag_reaches_api(fitted, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from weakseg import api
    from weakseg.cli.main import app

    _, paths = fitted
    seen = {}

    def fake_predict(run_dir, bags, out, **kw):
        seen.update(kw)
        return out

    monkeypatch.setattr(api, "predict", fake_predict)
    runner = CliRunner()
    ok = runner.invoke(app, ["predict", str(tmp_path), str(paths[0].parent), "--out", str(tmp_path / "o"),
                             "--quantize", "int8"])
    assert ok.exit_code in (0, 1), ok.output
    assert seen["quantize"] == "int8"
    seen.clear()
    runner.invoke(app, ["predict", str(tmp_path), str(paths[0].parent), "--out", str(tmp_path / "o2")])
    assert seen["quantize"] is None
    bad = runner.invoke(app, ["predict", str(tmp_path), str(paths[0].parent), "--out", str(tmp_path / "o3"),
                              "--quantize", "int4"])
    assert bad.exit_code == 2 and "int8" in bad.output and not seen.get("quantize")


def test_quantize_a_hovernet_learner_keeps_its_maps():
    """int8 HoVer-Net: nuclear probabilities of the fitted learner stay close to fp32."""
    from weakseg.nuclei.data import NucleiImage

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    inst = np.zeros((64, 64), np.int32)
    inst[10:20, 10:20], inst[30:40, 35:45] = 1, 2
    learner = create_learner("hovernet_seg", backbone="hovernet_tiny", downsample=1, steps_per_epoch=2, batch_size=2,
                             max_epochs=1, device="cpu", augment="none")
    learner.fit([NucleiImage("a", rgb, inst)])
    import copy

    before = learner.predict_maps(rgb)[0]
    q = quantize_learner(copy.deepcopy(learner), rgb[None])
    after = q.predict_maps(rgb)[0]
    assert q.quantized_ == "int8-static" and np.abs(after - before).mean() < 0.05
