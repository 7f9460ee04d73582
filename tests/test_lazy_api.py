"""weakseg/__init__.py: the curated top level is lazy (PEP 562) and complete; the torchvision shim still applies.

Each check runs in a fresh interpreter: this test process has long imported torch and most submodules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("torch", "torchvision", "timm", "openslide", "h5py", "pandas", "numpy", "scipy", "skimage", "sklearn",
         "kornia", "matplotlib", "PIL", "tifffile", "yaml", "pydantic")

PUBLIC = (
    "create_learner", "list_learners", "register_learner", "create_backbone", "list_backbones", "create_encoder",
    "list_encoders", "tile_cohort", "weaken_bags", "annotate_bags", "train", "predict", "evaluate", "load_run",
    "run_study", "Bag", "Resolution",
)


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_weakseg_imports_no_heavy_library():
    out = _run(f"""
        import json, sys
        import weakseg
        from weakseg._torchvision_compat import _BeforeTorchvision
        print(json.dumps({{
            "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules),
            "submodules": sorted(m for m in sys.modules if m.startswith("weakseg.")),
            "hook": any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path),
        }}))
    """)
    assert out["heavy"] == []
    assert out["submodules"] == ["weakseg._torchvision_compat"]
    assert out["hook"], "the torchvision shim must be armed by `import weakseg`"


def test_top_level_names_resolve_without_importing_submodules():
    out = _run(f"""
        import json, sys
        import weakseg
        train = weakseg.train  # no `import weakseg.api` first
        import weakseg.api
        from weakseg import Bag, create_learner  # from-imports go through __getattr__ too
        import weakseg.bags
        resolved = {{name: getattr(weakseg, name).__module__ for name in {PUBLIC!r}}}
        try:
            weakseg.no_such_name
            missing = None
        except AttributeError as err:
            missing = str(err)
        print(json.dumps({{
            "train_is_api_train": train is weakseg.api.train,
            "bag": Bag is weakseg.bags.Bag,
            "abmil": type(create_learner("abmil")).__name__,
            "resolved": resolved,
            "all": weakseg.__all__,
            "dir": dir(weakseg),
            "version": weakseg.__version__,
            "missing": missing,
        }}))
    """)
    assert out["train_is_api_train"] and out["bag"]
    assert out["abmil"] == "ABMIL"
    assert set(out["resolved"]) == set(PUBLIC)
    assert all(module.startswith("weakseg.") for module in out["resolved"].values())
    assert set(out["all"]) == {*PUBLIC, "__version__"}
    assert set(out["all"]) <= set(out["dir"])
    assert not {"importlib", "Any", "install_hook"} & set(out["dir"])
    assert isinstance(out["version"], str) and out["version"]
    assert out["missing"] == "module 'weakseg' has no attribute 'no_such_name'"


def test_torchvision_shim_applies_before_timm():
    """``import weakseg`` first, then timm (hence torchvision) imports on a CPU-only torch."""
    out = _run("""
        import json, sys
        import weakseg
        import timm  # noqa: F401
        from weakseg import _torchvision_compat as compat
        print(json.dumps({"torchvision": "torchvision" in sys.modules,
                          "hook_left": any(isinstance(f, compat._BeforeTorchvision) for f in sys.meta_path)}))
    """)
    assert out == {"torchvision": True, "hook_left": False}


# -- the command line (weakseg/cli/*.py) -------------------------------------------------------------

CLI_HEAVY = ("torch", "timm", "openslide", "h5py", "pandas", "skimage", "sklearn", "kornia", "matplotlib", "numpy",
             "scipy")
COMMANDS = ("synth", "split", "tile", "info", "show", "weaken", "annotate", "embed", "recipes", "train", "predict",
            "evaluate", "demo")


def test_cli_modules_import_no_heavy_library():
    """Every command module imports heavy libraries only inside its command function."""
    out = _run(f"""
        import json, sys
        import weakseg.cli.main
        print(json.dumps(sorted(m for m in {CLI_HEAVY!r} if m in sys.modules)))
    """)
    assert out == []


def test_cli_help_of_every_command_imports_no_heavy_library():
    out = _run(f"""
        import contextlib, io, json, sys
        from weakseg.cli.main import app
        codes = {{}}
        for argv in [["--help"], ["--version"], *([name, "--help"] for name in {COMMANDS!r})]:
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    app(argv)
                except SystemExit as exc:
                    codes[" ".join(argv)] = exc.code
        print(json.dumps({{"codes": codes, "heavy": sorted(m for m in {CLI_HEAVY!r} if m in sys.modules)}}))
    """)
    assert set(out["codes"].values()) == {0}, out["codes"]
    assert len(out["codes"]) == len(COMMANDS) + 2
    assert out["heavy"] == []


def test_light_commands_never_import_torch():
    """What tile, info, show, split, weaken and synth run on imports no torch (their start-up stays short)."""
    out = _run("""
        import json, sys
        import weakseg.bags, weakseg.inspect, weakseg.splits, weakseg.synth, weakseg.tiling.tiler, weakseg.weaken
        print(json.dumps(sorted(m for m in ("torch", "timm", "torchvision", "kornia") if m in sys.modules)))
    """)
    assert out == []


def test_cli_literals_match_their_sources():
    """Defaults the CLI keeps as literals (so that --help stays light) equal the constants they stand for."""
    from weakseg import bags, demo, inspect, splits, study, synth
    from weakseg.cli import demo as cli_demo
    from weakseg.cli import show as cli_show
    from weakseg.cli import split as cli_split
    from weakseg.cli import synth as cli_synth
    from weakseg.cli import tile as cli_tile

    assert cli_tile.CODECS == bags.CODECS
    assert cli_split.DEFAULT_STRATIFY == splits.DEFAULT_STRATIFY
    assert cli_synth.DEFAULT_SIZE == synth.DEFAULT_SIZE
    assert cli_show.SHOW_MAX_SIDE == inspect.SHOW_MAX_SIDE
    assert cli_demo.METHOD_NAMES == tuple(m.name for m in study.METHODS)
    assert cli_demo.DEFAULT_METHODS == demo.DemoConfig.methods
