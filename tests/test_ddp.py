"""DDP training (issue 11 §1) on CPU with gloo and 2 processes: sharding, one run directory, validation
on the whole validation set, resume across world sizes, MIL bags of different sizes, ``torchrun``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import weakseg  # noqa: F401
from weakseg.engine import TrainConfig, distributed
from weakseg.engine.checkpoint import load_checkpoint
from weakseg.errors import WeaksegError

sys.path.insert(0, str(Path(__file__).parent))
from test_seg_learners import _write_bag  # noqa: E402  (32-px tiles, 9 a bag, full masks)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # one_thread: tests/conftest.py
SEG = dict(backbone="unet_tiny", batch_size=4, augment=False, device="cpu", lr=0.05, scheduler="none", random_state=0)
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_group(rank: int, port: int) -> None:
    """What torchrun sets; the engine initialises the process group from it."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)


def _record_batches(log: list) -> None:
    """Record the tile rows of every batch this rank's seg learner loads."""
    import weakseg.learners.seg as seg

    real = seg.DataLoader

    def loader(data, batch_sampler, **kw):
        log.append([list(map(int, b)) for b in batch_sampler])
        return real(data, batch_sampler=batch_sampler, **kw)

    seg.DataLoader = loader


def _seg_worker(rank: int, port: int, root: str) -> None:
    from weakseg.learners import create_learner

    _join_group(rank, port)
    root_p = Path(root)
    seen: list = []
    _record_batches(seen)
    train, val = root_p / "bags" / "train", root_p / "bags" / "val"
    # a fresh 2-epoch run
    learner = create_learner("supervised_seg", max_epochs=2, **SEG)
    learner.fit(train, X_val=val, run_dir=root_p / "run", resume=False)
    if rank == 0:
        learner.save(root_p / "model.pt")
    # the same run stopped after its first epoch and resumed
    create_learner("supervised_seg", max_epochs=1, **SEG).fit(train, X_val=val, run_dir=root_p / "stopped")
    create_learner("supervised_seg", max_epochs=2, **SEG).fit(train, X_val=val, run_dir=root_p / "stopped", resume=True)
    # a run one process started, continued by two
    create_learner("supervised_seg", max_epochs=2, **SEG).fit(train, X_val=val, run_dir=root_p / "from1", resume=True)
    (root_p / f"seen{rank}.json").write_text(json.dumps(seen[:2]))  # the fresh run's two epochs


def _spawn(fn, *args) -> None:
    torch.multiprocessing.spawn(fn, args=(_free_port(), *args), nprocs=WORLD, join=True)


@pytest.fixture(scope="module")
def seg_runs(tmp_path_factory):
    from weakseg.learners import create_learner

    root = tmp_path_factory.mktemp("ddp")
    for split, seeds in (("train", (0, 1, 2)), ("val", (3,))):
        for s in seeds:
            _write_bag(root / "bags" / split / f"s{s}.h5", s)
    # one process writes epoch 0 of "from1"; two continue it in the workers
    create_learner("supervised_seg", max_epochs=1, **SEG).fit(root / "bags" / "train", X_val=root / "bags" / "val",
                                                              run_dir=root / "from1")
    t0 = time.perf_counter()
    _spawn(_seg_worker, str(root))
    print(f"2-process seg runs: {time.perf_counter() - t0:.1f} s")
    return root


def test_two_processes_write_one_run_directory(seg_runs):
    run = seg_runs / "run"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "curves.png", "env.json", "metrics.csv"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert json.loads((run / "env.json").read_text())["world_size"] == WORLD
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.epoch) == [0, 1] and np.isfinite(metrics.train_loss).all()
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["world_size"] == WORLD
    assert not [k for k in last["module"] if k.startswith(distributed.WRAPPER_PREFIXES)]


def test_validation_metric_equals_one_process_evaluation_of_the_saved_model(seg_runs):
    from weakseg.learners.base import Learner

    learner = Learner.load(seg_runs / "model.pt")
    metrics = pd.read_csv(seg_runs / "run" / "metrics.csv")
    best = load_checkpoint(seg_runs / "run" / "checkpoints" / "best.pt")
    value = learner.evaluate(learner.prepare_data(seg_runs / "bags" / "val"))["dice_cancer"]
    assert value == pytest.approx(metrics.val_dice_cancer[best["epoch"]], abs=1e-9)
    assert value == pytest.approx(best["value"], abs=1e-9)


def test_ranks_see_disjoint_shares_of_every_epoch(seg_runs):
    seen = [json.loads((seg_runs / f"seen{r}.json").read_text()) for r in range(WORLD)]
    n_tiles, batch = 27, SEG["batch_size"]
    n_batches = -(-n_tiles // batch)
    for epoch in range(2):
        per_rank = [[t for b in seen[r][epoch] for t in b] for r in range(WORLD)]
        assert len(seen[0][epoch]) == len(seen[1][epoch]) == -(-n_batches // WORLD)
        assert set(per_rank[0]) | set(per_rank[1]) == set(range(n_tiles))
        pad = -n_batches % WORLD  # DistributedSampler's padding: batches repeated from the start
        assert len(set(per_rank[0]) & set(per_rank[1])) <= pad * batch
    assert seen[0][0] != seen[0][1]  # a new permutation every epoch


def test_resume_under_two_processes_equals_the_uninterrupted_run(seg_runs):
    a = load_checkpoint(seg_runs / "run" / "checkpoints" / "last.pt")["module"]
    b = load_checkpoint(seg_runs / "stopped" / "checkpoints" / "last.pt")["module"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = pd.read_csv(seg_runs / "stopped" / "metrics.csv")
    assert list(history.epoch) == [0, 1]


def test_checkpoints_move_between_world_sizes(seg_runs):
    from weakseg.learners import create_learner

    one_then_two = load_checkpoint(seg_runs / "from1" / "checkpoints" / "last.pt")
    assert one_then_two["run"]["epoch"] == 2 and one_then_two["world_size"] == WORLD
    # written by two processes, continued by one
    learner = create_learner("supervised_seg", max_epochs=3, **SEG)
    learner.fit(seg_runs / "bags" / "train", X_val=seg_runs / "bags" / "val", run_dir=seg_runs / "stopped", resume=True)
    assert [row["epoch"] for row in learner.history_] == [0, 1, 2]
    assert load_checkpoint(seg_runs / "stopped" / "checkpoints" / "last.pt")["world_size"] == 1


def _mil_worker(rank: int, port: int, root: str) -> None:
    from weakseg.data import make_digit_bags
    from weakseg.learners import create_learner

    _join_group(rank, port)
    bags, y, _ = make_digit_bags(12, target=9, seed=0)  # bags of 10 ± 2 instances, batch 1
    learner = create_learner("abmil", encoder="lenet_mnist", instance_loss="clam", max_epochs=2, batch_size=1,
                             device="cpu", random_state=0)
    learner.fit(bags[:8], y[:8], X_val=bags[8:], y_val=y[8:], run_dir=Path(root) / "mil")
    np.save(Path(root) / f"mil{rank}.npy", learner.predict_proba(bags[8:]))


def test_abmil_with_clam_instance_loss_trains_under_two_processes(tmp_path):
    """Bags of different sizes, one a step, and CLAM's classifiers (one unused each step) under DDP."""
    _spawn(_mil_worker, str(tmp_path))
    p0, p1 = np.load(tmp_path / "mil0.npy"), np.load(tmp_path / "mil1.npy")
    np.testing.assert_array_equal(p0, p1)  # the ranks end with the same weights
    metrics = pd.read_csv(tmp_path / "mil" / "metrics.csv")
    assert list(metrics.epoch) == [0, 1] and "train_instance_loss" in metrics


def _mil_seg_worker(rank: int, port: int, root: str) -> None:
    from weakseg.bags import Bag
    from weakseg.learners import create_learner

    _join_group(rank, port)
    root_p = Path(root)
    m = create_learner("mil_seg", mil_params=dict(encoder="colon27", bag_size=16, beta=0.0, augment=False, max_epochs=1),
                       seg_params=dict(backbone="unet_tiny", batch_size=8, max_epochs=1), rounds=1, device="cpu",
                       random_state=0)
    m.fit(root_p / "weak", run_dir=root_p / "run")
    with Bag(root_p / "weak" / "p0.h5") as bag:
        np.save(root_p / f"pred{rank}.npy", m.predict_tiles(bag.read_tiles(np.arange(4))))


def test_mil_seg_stages_train_under_two_processes(tmp_path):
    from test_mil_seg import write_slide  # 4x4-tile slides with cancer blobs

    from weakseg.refine import ROUNDS_CSV
    from weakseg.weaken import weaken_bags

    for i, cells in enumerate(([1, 6, 11], [3, 8, 12])):
        write_slide(tmp_path / "full" / f"p{i}.h5", f"p{i}", cells, i)
    for i in range(2):
        write_slide(tmp_path / "full" / f"n{i}.h5", f"n{i}", [], 10 + i)
    weaken_bags(tmp_path / "full", tmp_path / "weak", "slide")
    _spawn(_mil_seg_worker, str(tmp_path))
    np.testing.assert_array_equal(np.load(tmp_path / "pred0.npy"), np.load(tmp_path / "pred1.npy"))
    run = tmp_path / "run"
    assert (run / ROUNDS_CSV).is_file() and json.loads((run / "mil" / "env.json").read_text())["world_size"] == WORLD


def test_rank_share_is_distributed_samplers_assignment(monkeypatch):
    items = list(range(7))
    assert distributed.rank_share(items) is items  # one process: unchanged
    shares = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "info", lambda rank=rank: distributed.DistInfo(rank, 3, rank))
        shares.append(distributed.rank_share(items))
    sampler = [list(torch.utils.data.DistributedSampler(items, num_replicas=3, rank=r, shuffle=False)) for r in range(3)]
    assert shares == sampler
    assert distributed.rank_share(np.arange(7)).tolist() == sampler[2]


def test_wrapper_prefixes_are_stripped_and_settings_checked():
    state = {"module._orig_mod.w": 1, "module._orig_mod.b": 2}
    assert distributed.strip_wrapper_prefixes(state) == {"w": 1, "b": 2}
    assert distributed.strip_wrapper_prefixes({"module.w": 1, "b": 2}) == {"module.w": 1, "b": 2}
    TrainConfig(amp=True, amp_dtype="bfloat16", channels_last=True, torch_compile="max-autotune", sync_bn=True)
    for bad in (dict(amp_dtype="fp8"), dict(torch_compile="fast"), dict(channels_last="yes")):
        with pytest.raises(WeaksegError):
            TrainConfig(**bad)


def test_cpu_bfloat16_autocast_and_channels_last_train(tmp_path):
    from weakseg.learners import create_learner

    for split, seeds in (("train", (0, 1)), ("val", (3,))):
        for s in seeds:
            _write_bag(tmp_path / split / f"s{s}.h5", s)
    learner = create_learner("supervised_seg", max_epochs=1, amp=True, channels_last=True, deterministic=True, **SEG)
    learner.fit(tmp_path / "train", X_val=tmp_path / "val")
    assert np.isfinite(learner.history_[0]["train_loss"])
    assert all(p.is_contiguous() for p in learner.module_.parameters())  # back to the default layout
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run


RECIPE = """\
name: ddp_tiny
learner:
  name: supervised_seg
  params: {{backbone: unet_tiny, batch_size: 4, augment: false, max_epochs: 1, device: cpu, lr: 0.05}}
data:
  bags: {bags}
  val_fraction: 0.25
"""


def test_weakseg_train_under_torchrun(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.is_file():
        pytest.skip("no torchrun next to this python")
    for s in range(4):
        _write_bag(tmp_path / "bags" / f"s{s}.h5", s)
    (tmp_path / "r.yaml").write_text(RECIPE.format(bags=tmp_path / "bags"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", str(WORLD), "--no-python", str(torchrun.parent / "weakseg"), "train",
           str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (out.stdout + out.stderr).count("done: run directory") == 1  # rank 0 reports
    run = tmp_path / "run"
    assert (run / "model.pt").is_file() and json.loads((run / "env.json").read_text())["world_size"] == WORLD
    assert len(pd.read_csv(run / "metrics.csv")) == 1
