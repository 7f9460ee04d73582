"""The wheel carries the shipped recipes: an installed weakseg (not a checkout) lists and loads them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs a wheel

ROOT = Path(__file__).resolve().parents[1]
#: every recipe of the source tree must be in the wheel (and nothing else)
NAMES = {p.stem for p in (ROOT / "weakseg" / "recipe_files").glob("*.yaml")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {result.stderr.strip()[-300:]}")
    return next(out.glob("weakseg-*.whl"))


def test_wheel_contains_every_recipe(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).stem for n in names if n.startswith("weakseg/recipe_files/") and n.endswith(".yaml")}
    assert shipped == NAMES


def test_installed_wheel_finds_and_loads_its_recipes(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = ("import weakseg, weakseg.recipes as r; from pathlib import Path; "
            f"assert Path(weakseg.__file__).resolve().is_relative_to(Path({str(target)!r}).resolve()), weakseg.__file__; "
            "names = sorted(p.stem for p in r.list_recipes()); print(','.join(names)); "
            "r.load_recipe(r.find_recipe('supervised_transunet'), profile='cpu')")
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(result.stdout.strip().split(",")) == NAMES


def test_installed_wheel_runs_the_cli(wheel: Path, tmp_path: Path) -> None:
    """Issue 9: `weakseg recipes` and `weakseg demo --help` from the installed wheel, outside the checkout."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    for args in (["recipes"], ["demo", "--help"]):
        result = subprocess.run([sys.executable, "-m", "weakseg", *args], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "hovernet_monuseg" in subprocess.run([sys.executable, "-m", "weakseg", "recipes"], capture_output=True,
                                                text=True, env=env, cwd=tmp_path, timeout=300).stdout
