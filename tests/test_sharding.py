"""Issue 11 §2: `--shard i/n`, worker processes per device, merged per-slide status, resume (predict, embed, tile).

Tiny bags (8-px tiles, a mean-colour learner from ``tests/plugins``; 16-px toy bags for embed); the
two tests that spawn worker processes take a few seconds each (one child imports torch).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import weakseg  # noqa: F401
from weakseg import api
from weakseg.errors import WeaksegError
from weakseg.features import EMBED_STATUS_CSV, embed_bags, read_features
from conftest import PLUGINS, colour_recipe
from weakseg.sharding import merge_rows, parse_devices, parse_shard, read_rows, run_workers, shard_of, take_shard

VOLATILE = ["seconds", "device"]  # what differs between runs that did the same work


# -- the sharding rules ---------------------------------------------------------------------------
def test_shards_partition_the_sorted_items_whatever_their_order():
    items = [f"s{i:02d}" for i in range(30)]
    parts = [take_shard(reversed(items), (i, 3)) for i in range(3)]
    assert sorted(x for p in parts for x in p) == items and all(parts)
    assert parts[0] == sorted(x for x in items if shard_of(x, 3) == 0)
    # a shard's share does not depend on which other items exist (bags other array tasks have not written yet)
    assert take_shard(items[:4], (0, 3)) == [x for x in parts[0] if x in items[:4]]
    assert take_shard(items, "1/3") == parts[1] and take_shard(items, None) == items
    assert parse_shard("3/16") == (3, 16)
    for bad in ("1", "a/b", "3/3", "-1/2", "0/0"):
        with pytest.raises(WeaksegError, match="shard"):
            parse_shard(bad)
    from weakseg.tiling.tiler import parse_shard as tiler_parse_shard

    assert tiler_parse_shard is parse_shard  # one implementation for tile, embed and predict


def test_devices_and_workers():
    assert parse_devices("0,1,2,3") == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    assert parse_devices(None, 2) == ["cpu", "cpu"]
    assert parse_devices("0,1", 4) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert parse_devices(None, 1, default="cuda:1") == ["cuda:1"]
    for bad in ("gpu0", "0,,1"):
        with pytest.raises(WeaksegError, match="devices"):
            parse_devices(bad)


def test_merge_rows_under_the_lock_loses_nothing(tmp_path):
    path = tmp_path / "status.csv"

    def writer(k: int) -> None:
        for i in range(15):
            merge_rows(path, [{"id": f"{k}-{i:02d}", "v": i}], ("id",), ("id", "v"))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = read_rows(path)
    assert len(rows) == 45 and [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    merge_rows(path, [{"id": "0-00", "v": 99}], ("id",), ("id", "v"), keep_existing=True)
    assert read_rows(path)[0]["v"] == "0"


# -- worker processes: a dying worker loses only its item -------------------------------------------
def test_a_killed_worker_loses_only_its_item(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    import sharding_helpers  # init/work live in a light module: spawned workers import only it

    done, lost = {}, {}
    run_workers(list(range(6)), sharding_helpers.init, sharding_helpers.work, ["cpu", "cpu"], init_args=(10,),
                on_done=lambda i, v: done.__setitem__(i, v), on_lost=lambda i, r: lost.__setitem__(i, r))
    assert done == {i: i * 10 for i in range(6) if i != 3}
    assert list(lost) == [3] and "died" in lost[3]


# -- predict ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_cohort):
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(PLUGINS))
    root = tmp_path_factory.mktemp("sharding")
    make_cohort(root / "bags", n=5)
    recipe = root / "colour.yaml"
    recipe.write_text(colour_recipe(root / "bags", max_epochs=1))
    run = api.train(recipe, out=root / "run")
    yield root, run
    mp.undo()


def _status(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / api.STATUS_CSV, dtype=str).drop(columns=VOLATILE)


def _maps(out: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted(out.glob("*.npy"))}


def test_predict_shards_cover_every_slide_once_and_merge_like_one_process(trained, tmp_path):
    root, run = trained
    one = api.predict(run, root / "bags", tmp_path / "one")
    seen: dict[str, list[str]] = {}
    for i in range(2):
        api.predict(run, root / "bags", tmp_path / "sharded", shard=f"{i}/2",
                    on_status=lambda s, st, i=i: seen.setdefault(s, []).append(f"{i}:{st}"))
    assert sorted(seen) == sorted(pd.read_csv(one / api.SLIDES_CSV).slide_id) and all(len(v) == 1 for v in seen.values())
    pd.testing.assert_frame_equal(_status(tmp_path / "sharded"), _status(one))
    assert (tmp_path / "sharded" / api.SLIDES_CSV).read_text() == (one / api.SLIDES_CSV).read_text()
    maps = _maps(one)
    assert len(maps) == 5 and all(np.array_equal(m, _maps(tmp_path / "sharded")[k], equal_nan=True) for k, m in maps.items())
    # a second run skips every finished slide and leaves the status as it was
    before = (tmp_path / "sharded" / api.STATUS_CSV).read_text()
    statuses = []
    api.predict(run, root / "bags", tmp_path / "sharded", on_status=lambda s, st: statuses.append(st))
    assert statuses == ["skipped(resume)"] * 5 and (tmp_path / "sharded" / api.STATUS_CSV).read_text() == before
    # a bag written again is predicted again; overwrite redoes all
    bag = sorted((root / "bags").glob("*.h5"))[0]
    os.utime(bag)
    statuses.clear()
    api.predict(run, root / "bags", tmp_path / "sharded", on_status=lambda s, st: statuses.append(st))
    assert sorted(statuses) == ["ok"] + ["skipped(resume)"] * 4


def test_two_cpu_workers_give_the_maps_of_one(trained, tmp_path):
    root, run = trained
    one = api.predict(run, root / "bags", tmp_path / "one")
    two = api.predict(run, root / "bags", tmp_path / "two", devices="cpu,cpu")
    status = pd.read_csv(two / api.STATUS_CSV, dtype=str)
    assert (status.status == "ok").all() and set(status.device) == {"cpu"}
    pd.testing.assert_frame_equal(_status(two), _status(one))
    assert (two / api.SLIDES_CSV).read_text() == (one / api.SLIDES_CSV).read_text()
    a, b = _maps(one), _maps(two)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    assert not list(two.glob(".*part"))


def test_predict_cli_shard_and_failure_rows_merge(trained, tmp_path):
    from typer.testing import CliRunner

    from weakseg.cli.main import app

    root, run = trained
    bags = tmp_path / "bags"
    bags.mkdir()
    for p in sorted((root / "bags").glob("s*.h5")):
        (bags / p.name).write_bytes(p.read_bytes())
    (bags / "zz_garbage.h5").write_bytes(b"not a bag")
    out = tmp_path / "maps"
    codes = [CliRunner().invoke(app, ["predict", str(run), str(bags), "--out", str(out), "--shard", f"{i}/3"]).exit_code
             for i in range(3)]
    assert sorted(codes) == [0, 0, 1]  # only the shard holding the bad bag reports it
    status = pd.read_csv(out / api.STATUS_CSV)
    assert len(status) == 6 and (status.status == "failed").sum() == 1
    assert len(pd.read_csv(out / api.SLIDES_CSV)) == 5
    assert pd.read_csv(out / api.FAILURES_CSV).bag.tolist() == [str(bags / "zz_garbage.h5")]
    res = CliRunner().invoke(app, ["predict", str(run), str(bags), "--out", str(out), "--shard", "3/3"])
    assert res.exit_code == 2 and "shard" in res.output


# -- embed ------------------------------------------------------------------------------------------
@pytest.fixture
def toy_bags(tmp_path):
    from weakseg.data import write_toy_bags

    write_toy_bags(tmp_path / "bags", n_bags=5, n_tiles=(3, 6), tile_size=16, seed=2)
    return tmp_path / "bags"


def _embed_status(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / EMBED_STATUS_CSV, dtype=str).drop(columns=VOLATILE)


def test_embed_shards_and_workers_match_one_process(toy_bags, tmp_path):
    import shutil

    copies = {name: tmp_path / name for name in ("one", "sharded", "workers")}
    for folder in copies.values():
        shutil.copytree(toy_bags, folder)
    one = embed_bags(copies["one"], "colon27", random_init=True, batch_size=4)
    parts = [embed_bags(copies["sharded"], "colon27", random_init=True, batch_size=4, shard=(i, 2)) for i in range(2)]
    assert sorted(r.bag.name for p in parts for r in p) == sorted(r.bag.name for r in one)
    workers = embed_bags(copies["workers"], "colon27", random_init=True, batch_size=4, workers=2)
    assert sorted(r.bag.name for r in workers) == sorted(r.bag.name for r in one)
    expected = _embed_status(copies["one"])
    assert set(expected.status) == {"written"} and len(expected) == 5
    for name in ("sharded", "workers"):
        pd.testing.assert_frame_equal(_embed_status(copies[name]), expected)
        for r in one:
            np.testing.assert_allclose(read_features(copies[name] / r.bag.name), read_features(r.bag), rtol=1e-5, atol=1e-6)
    # a rerun skips every bag and keeps the rows of the run that wrote them
    again = embed_bags(copies["sharded"], "colon27", random_init=True, shard="1/2")
    assert {r.status for r in again} == {"skipped"}
    pd.testing.assert_frame_equal(_embed_status(copies["sharded"]), expected)


# -- docs/cluster.md: the Slurm array script and the torchrun launch, run by hand ------------------
DOCS = Path(__file__).resolve().parents[1] / "docs" / "cluster.md"


def _block(name: str) -> str:
    text = DOCS.read_text()
    return text[text.index(f"# weakseg-{name}-begin"):text.index(f"# weakseg-{name}-end")]


def test_cluster_scripts_on_a_tiny_cohort(synth_cohort, tmp_path):
    import subprocess
    import sys

    work = tmp_path / "work"
    (tmp_path / "array.sh").write_text(_block("array"))
    (tmp_path / "train.sh").write_text(_block("train"))
    (tmp_path / "seg.yaml").write_text(colour_recipe(work / "bags", max_epochs=1, learner="mean_colour_seg"))
    env = {**os.environ, "COHORT": str(synth_cohort), "WORK": str(work), "WEAKSEG": f"{sys.executable} -m weakseg",
           "DEVICES": "cpu", "TILE_ARGS": "--level 1 --tile-size 64", "EMBED_ARGS": "--encoder colon27 --random-init",
           "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_CPUS_PER_TASK": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
           "RECIPE": str(tmp_path / "seg.yaml"), "TRAIN_ARGS": "", "LAUNCH": sys.executable, "SRUN": "", "HEAD": "localhost"}

    def bash(script: str, **extra: str) -> None:
        proc = subprocess.run(["bash", str(tmp_path / script)], env={**env, **extra}, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    for task in ("1", "0"):  # array tasks in any order
        bash("array.sh", STAGE="prep", SLURM_ARRAY_TASK_ID=task)
    ids = sorted(pd.read_csv(synth_cohort / "train.csv").image_id)
    manifest = pd.read_csv(work / "bags" / "manifest.csv")
    assert sorted(manifest.slide_id) == ids and (manifest.status == "ok").all()
    features = pd.read_csv(work / "bags" / EMBED_STATUS_CSV)
    assert sorted(features.bag) == [f"{i}.h5" for i in ids] and (features.status == "written").all()
    bash("train.sh")  # the torchrun line with LAUNCH=python: one process
    bash("array.sh", STAGE="predict", SLURM_ARRAY_TASK_ID="0", RUN=str(work / "runs" / "nnpu"))
    bash("array.sh", STAGE="predict", SLURM_ARRAY_TASK_ID="1", RUN=str(work / "runs" / "nnpu"))
    status = pd.read_csv(work / "maps" / api.STATUS_CSV)
    assert sorted(status.slide_id) == ids and (status.status == "ok").all()
    assert len(list((work / "maps").glob("*.prob.tif"))) == len(ids)


def test_embed_prefetch_keeps_order_and_raises_in_place():
    from weakseg.features import prefetch

    assert list(prefetch(iter(range(20)), depth=2)) == list(range(20))

    def broken():
        yield 1
        raise ValueError("tile 7 is not a JPEG")

    got = []
    with pytest.raises(ValueError, match="tile 7"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]
