"""Recipe schema, merging, overrides and error messages; every shipped recipe validates."""

from __future__ import annotations

from pathlib import Path

import pytest

import weakseg  # noqa: F401
from weakseg.errors import RecipeError
from weakseg.recipes import apply_override, deep_merge, list_recipes, load_recipe, parse_override, parse_yaml, validate_recipe

PLUGINS = Path(__file__).parent / "plugins"

BASE = """\
name: toy
description: mean-colour MIL
seed: 5
plugins: [custom_learner_plugin]
learner:
  name: mean_colour_mil
  params: {lr: 1e-3, max_epochs: 4}
data:
  bags: bags
profiles:
  tiny:
    learner: {params: {max_epochs: 1}}
    data: {val_fraction: 0.5}
"""


@pytest.fixture(autouse=True)
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))


def write(tmp_path: Path, text: str = BASE, name: str = "toy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_recipe_resolves_paths_floats_and_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(write(tmp_path))
    assert recipe.learner.params == {"lr": 0.001, "max_epochs": 4}
    assert recipe.data.bags == tmp_path / "bags" and recipe.data.bags.is_absolute()
    assert recipe.learner_params()["random_state"] == 5
    learner = recipe.build_learner()
    assert (learner.lr, learner.max_epochs, learner.random_state) == (0.001, 4, 5)


def test_resolved_yaml_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path), profile="tiny", overrides=["learner.params.lr=0.5"])
    text = recipe.to_yaml()
    assert text.startswith(f"# resolved from {tmp_path / 'toy.yaml'} (profile tiny) with --set learner.params.lr=0.5")
    again = validate_recipe(parse_yaml(text))
    assert again.resolved() == recipe.resolved()
    assert "profiles" not in parse_yaml(text)


def test_profile_deep_merges_over_base(tmp_path):
    recipe = load_recipe(write(tmp_path), profile="tiny")
    assert recipe.learner.params == {"lr": 0.001, "max_epochs": 1}
    assert recipe.data.val_fraction == 0.5


def test_unknown_profile_suggests(tmp_path):
    with pytest.raises(RecipeError, match=r"toy.yaml: unknown profile 'tiyn'; did you mean 'tiny'\?"):
        load_recipe(write(tmp_path), profile="tiyn")


@pytest.mark.parametrize(("text", "value"), [
    ("learner.params.lr=1e-4", 1e-4),
    ("data.fold=2", 2),
    ("plugins=[a, b]", ["a", "b"]),
    ("description=two words", "two words"),
    ("data.val_bags=null", None),
])
def test_parse_override(text, value):
    keys, parsed = parse_override(text)
    assert keys == text.split("=")[0].split(".") and parsed == value


@pytest.mark.parametrize("text", ["lr", "=3", "a..b=1", "a.b c=1"])
def test_bad_override_syntax(text):
    with pytest.raises(RecipeError, match="expected KEY.PATH=VALUE"):
        parse_override(text)


def test_apply_override_and_deep_merge_do_not_mutate():
    tree = {"a": {"b": 1, "c": [1]}}
    assert apply_override(tree, ["a", "d", "e"], 2) == {"a": {"b": 1, "c": [1], "d": {"e": 2}}}
    assert deep_merge(tree, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}
    assert tree == {"a": {"b": 1, "c": [1]}}
    with pytest.raises(RecipeError, match="a.b is not a mapping"):
        apply_override(tree, ["a", "b", "x"], 0)


@pytest.mark.parametrize(("edit", "overrides", "message"), [
    (("learner:", "lerner:"), (), r"toy.yaml: 2 errors\n  learner: required key is missing\n"
                                     r"  lerner: unknown key 'lerner'; did you mean 'learner'\?"),
    (("  bags: bags", "  bgas: bags"), (), r"data.bgas: unknown key 'bgas'; did you mean 'bags'\?"),
    (("seed: 5", "seed: five"), (), r"seed: expected an integer, got 'five'"),
    ((), ["learner.params.lr=abc"], r"toy.yaml with --set learner.params.lr=abc: learner.params.lr: "
                                    r"expected a number, got 'abc'"),
    ((), ["learner.params.lrr=0.1"], r"learner.params.lrr: MeanColourMIL \(mean_colour_mil\) has no parameter "
                                     r"'lrr'; did you mean 'lr'\?"),
    ((), ["learner.name=mean_color_mil"], r"learner.name: unknown learner 'mean_color_mil'; did you mean "
                                          r"'mean_colour_mil'\?"),
    ((), ["learner.params.scheduler=cosin"], r"learner.params: unknown scheduler 'cosin'; did you mean 'cosine'\?"),
    ((), ["data.val_bags=v", "data.split_file=s.csv"], r"data: give either val_bags or split_file, not both"),
    ((), ["data.val_fraction=1.5"], r"data.val_fraction: Input should be less than 1, got 1.5"),
    ((), ["plugins=[no_such_plugin_module]"], r"plugins\[0\]: cannot import 'no_such_plugin_module'"),
    (("data:\n  bags: bags\n", ""), (), r"data: required key is missing"),
    (("name: toy", "name: my toy"), (), r"name: String should match pattern"),
])
def test_validation_errors_name_file_and_key_path(tmp_path, edit, overrides, message):
    text = BASE.replace(*edit) if edit else BASE
    with pytest.raises(RecipeError, match=message):
        load_recipe(write(tmp_path, text), overrides=overrides)


def test_several_errors_are_listed(tmp_path):
    text = BASE.replace("seed: 5", "seed: x\nextra: 1")
    with pytest.raises(RecipeError, match=r"2 errors\n  seed: .*\n  extra: unknown key"):
        load_recipe(write(tmp_path, text))


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(RecipeError, match=r"toy.yaml:3: invalid YAML"):
        load_recipe(write(tmp_path, "name: toy\nlearner: {name: x\nseed: 1\n"))


def test_missing_recipe_file_is_an_error(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")


def test_shipped_recipes_load_by_name_and_near_misses_suggest():
    if not SHIPPED:
        pytest.skip("no recipes/ folder next to the package")
    name = SHIPPED[0].stem
    assert load_recipe(name, check_learner=False).name
    with pytest.raises(RecipeError, match=f"did you mean the shipped recipe '{name}'"):
        load_recipe(name[:-1])


SHIPPED = list_recipes()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipe_and_its_tiny_profile_validate(path):
    recipe = load_recipe(path)
    assert recipe.name and recipe.description
    assert "tiny" in recipe.profiles, f"{path.name} has no 'tiny' profile"
    for profile in recipe.profiles:
        load_recipe(path, profile=profile)


# -- the data section decides the split ----------------------------------------------------------
@pytest.fixture(scope="module")
def bag_folders(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(PLUGINS))
    from tiny_bags import write_tiny_bags

    root = tmp_path_factory.mktemp("split")
    write_tiny_bags(root / "bags", n=10, seed=0)
    write_tiny_bags(root / "val", n=4, seed=1)
    yield root
    mp.undo()


def data_spec(**kw):
    from weakseg.recipes import DataSpec

    return DataSpec(**kw)


def test_default_split_is_seeded_stratified_and_disjoint(bag_folders):
    from weakseg.api import split_bags
    from weakseg.bags import Bag

    spec = data_spec(bags=bag_folders / "bags", val_fraction=0.4)
    split = split_bags(spec, seed=0)
    assert split == split_bags(spec, seed=0)
    assert split["val"] != split_bags(spec, seed=3)["val"]
    assert sorted(split["train"] + split["val"]) == sorted((bag_folders / "bags").glob("*.h5"))
    assert [Bag(p).label for p in split["val"]].count(1) == 2 and len(split["val"]) == 4
    assert split["test"] == []


def test_val_bags_and_split_file(bag_folders, tmp_path):
    from weakseg.api import split_bags
    from weakseg.errors import ManifestError

    split = split_bags(data_spec(bags=bag_folders / "bags", val_bags=bag_folders / "val"), seed=0)
    assert (len(split["train"]), len(split["val"])) == (10, 4)
    rows = ["slide_id,fold,split"] + [f"s0_{i:02d},0,{'train' if i < 6 else 'val' if i < 8 else 'test'}" for i in range(10)]
    csv = tmp_path / "splits.csv"
    csv.write_text("\n".join([*rows, "not_tiled,0,train"]) + "\n")
    split = split_bags(data_spec(bags=bag_folders / "bags", split_file=csv), seed=0)
    assert [len(split[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    assert split["test"][0].name == "s0_08.h5"
    with pytest.raises(ManifestError, match="no fold 1"):
        split_bags(data_spec(bags=bag_folders / "bags", split_file=csv, fold=1), seed=0)


def test_empty_bag_folder_is_an_error(tmp_path):
    from weakseg.api import split_bags
    from weakseg.errors import WeaksegError

    (tmp_path / "none").mkdir()
    with pytest.raises(WeaksegError, match="no bags"):
        split_bags(data_spec(bags=tmp_path / "none"), seed=0)
