"""Training recipes: YAML files validated with pydantic, with profiles and ``--set`` overrides.

A recipe names a learner and its hyperparameters, the training data and the seed::

    name: abmil_gated                 # run directories are called <name>-<timestamp>
    description: Gated attention MIL (Ilse et al. 2018)
    seed: 0                           # split seed; also the learner's random_state unless set in params
    plugins: [my_package.learners]    # imported first: custom learners register themselves
    learner:
      name: abmil                     # a registered learner (weakseg.learners.base.list_learners())
      params: {lr: 2.0e-4, max_epochs: 50, scheduler: cosine}
    data:
      bags: data/bags                 # folder of HDF5 tile bags
      val_bags: null                  # a separate validation folder, or
      split_file: null                # a split file (weakseg.splits.load_split) and its
      fold: 0                         #   fold, or neither: a seeded slide-level split of
      val_fraction: 0.2               #   `bags`, stratified by slide label
    profiles:
      tiny: {learner: {params: {max_epochs: 2}}}   # deep-merged over the recipe by --profile tiny

Resolution order: the file, then the profile, then each ``--set key.path=value`` (the value is
parsed as YAML). Relative paths are taken relative to the current working directory and stored
absolute in the resolved recipe. Every error names the recipe file and the full key path.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, model_validator

from .errors import RecipeError, WeaksegError

RECIPE_SUFFIXES = (".yaml", ".yml")


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 would make it a string)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML with :class:`_YamlLoader`; syntax errors name ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise RecipeError(f"{source}{where}: invalid YAML ({problem})") from None
    except (ValueError, OverflowError, RecursionError) as err:  # e.g. an integer of thousands of digits
        first = str(err).split(";")[0].split("\n")[0]
        raise RecipeError(f"{source}: invalid value ({type(err).__name__}: {first})") from None


# -- schema --------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LearnerSpec(_Strict):
    """Which learner to train and its constructor parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class DataSpec(_Strict):
    """Where the training bags are and how they are split into train and validation sets."""

    bags: Path
    val_bags: Path | None = None
    split_file: Path | None = None
    fold: int = Field(0, ge=0)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one_validation_source(self) -> DataSpec:
        if self.val_bags is not None and self.split_file is not None:
            raise ValueError("give either val_bags or split_file, not both")
        return self


class Recipe(_Strict):
    """A validated recipe (see the module docstring for the schema)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    learner: LearnerSpec
    data: DataSpec
    plugins: list[str] = Field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    _source: str = PrivateAttr(default="<recipe>")

    @property
    def source(self) -> str:
        """Where the recipe came from, with the profile and overrides applied (for messages)."""
        return self._source

    def learner_params(self) -> dict[str, Any]:
        """Learner parameters with ``random_state`` defaulting to the recipe's ``seed``."""
        from .learners.base import LEARNERS

        params = dict(self.learner.params)
        if "random_state" in _init_params(LEARNERS.get(self.learner.name)):
            params.setdefault("random_state", self.seed)
        return params

    def build_learner(self):
        """Import the plugins, then create the (unfitted) learner."""
        from .learners.base import create_learner

        import_plugins(self.plugins, self._source)
        return create_learner(self.learner.name, **self.learner_params())

    def resolved(self) -> dict[str, Any]:
        """Plain dict of the resolved recipe, without profiles, with absolute paths."""
        return self.model_dump(mode="json", exclude={"profiles"})

    def to_yaml(self) -> str:
        """The resolved recipe as YAML (what a run directory's ``recipe.yaml`` holds)."""
        header = f"# resolved from {self._source}\n"
        return header + yaml.safe_dump(self.resolved(), sort_keys=False, default_flow_style=False, width=120)


# -- merging and overrides ----------------------------------------------------------------
def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge: mappings merge key by key, anything else in ``over`` replaces ``base``."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"learner.params.lr=1e-4"`` → ``(["learner", "params", "lr"], 0.0001)`` (value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", k) for k in keys):
        raise RecipeError(f"--set {_clip(text)!r}: expected KEY.PATH=VALUE, e.g. learner.params.lr=1e-4")
    return keys, parse_yaml(raw, source=f"--set {_clip(text)!r}")


def _clip(text: str, limit: int = 80) -> str:
    """``text`` shortened for messages (a 5,000-digit value must not flood the terminal)."""
    return text if len(text) <= limit else f"{text[:limit - 20]}…{text[-8:]} ({len(text)} characters)"


def apply_override(tree: dict[str, Any], keys: Sequence[str], value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with ``value`` at ``keys`` (missing mappings are created)."""
    out = dict(tree)
    node = out
    for i, key in enumerate(keys[:-1]):
        child = node.get(key, {})
        if not isinstance(child, dict):
            raise RecipeError(f"--set {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is not a mapping")
        node[key] = dict(child)
        node = node[key]
    node[keys[-1]] = value
    return out


# -- loading -------------------------------------------------------------------------------
def recipes_dir() -> Path:
    """The shipped recipes: package data ``weakseg/recipe_files/`` (``recipes/`` in a checkout links to it), so an
    installed wheel has them too."""
    return Path(__file__).resolve().parent / "recipe_files"


def list_recipes(folder: str | Path | None = None) -> list[Path]:
    """Recipe files in ``folder`` (default :func:`recipes_dir`), sorted by name."""
    folder = Path(folder) if folder is not None else recipes_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in RECIPE_SUFFIXES and not p.name.startswith("."))


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file path, or the shipped recipe of that name (``abmil_gated`` → ``recipes/abmil_gated.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = {p.stem: p for p in list_recipes()}
    if path.suffix == "" and str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    close = difflib.get_close_matches(path.stem, shipped, n=1)
    hint = f"; did you mean the shipped recipe {close[0]!r}?" if close else ""
    raise RecipeError(f"{name_or_path}: no such recipe file{hint}")


def load_recipe(source: str | Path, profile: str | None = None, overrides: Iterable[str] = (),
                check_learner: bool = True) -> Recipe:
    """Read, merge (profile, then ``--set`` overrides) and validate a recipe.

    With ``check_learner`` the plugins are imported and the learner name, its parameter names
    and types, and its training-engine settings are checked too.
    """
    path = find_recipe(source)
    raw = parse_yaml(path.read_text(), source=str(path))
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    label = str(path)
    if profile is not None:
        profiles = raw.get("profiles") or {}
        if not isinstance(profiles, dict) or profile not in profiles:
            raise RecipeError(f"{path}: unknown profile {profile!r}{_hint(profile, profiles)}")
        partial = profiles[profile] or {}
        if not isinstance(partial, dict) or "profiles" in partial:
            raise RecipeError(f"{path}: profiles.{profile} must be a mapping of recipe keys (without profiles)")
        raw = deep_merge(raw, partial)
        label += f" (profile {profile})"
    overrides = list(overrides)
    for text in overrides:
        keys, value = parse_override(text)
        raw = apply_override(raw, keys, value)
    if overrides:
        label += " with --set " + " ".join(_clip(o) for o in overrides)
    return validate_recipe(raw, label, check_learner=check_learner)


def validate_recipe(raw: dict[str, Any], source: str = "<recipe>", check_learner: bool = True) -> Recipe:
    """Validate a recipe mapping; errors are :class:`RecipeError` naming ``source`` and key paths."""
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeError(_format_errors(err, source, Recipe)) from None
    recipe._source = source
    data = recipe.data
    for field in ("bags", "val_bags", "split_file"):
        value = getattr(data, field)
        if value is not None:
            setattr(data, field, value.expanduser().absolute())
    if check_learner:
        _check_learner(recipe, source)
    return recipe


def import_plugins(modules: Iterable[str], source: str = "<recipe>") -> None:
    """Import plugin modules (the current directory is searched too) so their learners register."""
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    for i, module in enumerate(modules):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise RecipeError(f"{source}: plugins[{i}]: cannot import {module!r} ({err})") from None


def _trusted_sys_path(untrusted: Iterable[str | Path]) -> list[str]:
    """``sys.path`` without ``''``, ``'.'`` and the ``untrusted`` folders (compared resolved)."""
    bad = set()
    for folder in untrusted:
        try:
            bad.add(Path(folder).resolve())
        except OSError:
            pass
    out = []
    for entry in sys.path:
        if entry in ("", "."):
            continue
        try:
            if Path(entry).resolve() in bad:
                continue
        except OSError:
            continue
        out.append(entry)
    return out


def import_run_plugins(modules: Iterable[str], source: str, run_dir: str | Path, *, allow: bool = False) -> None:
    """Import the plugins of a *loaded* run (``weakseg predict`` / ``evaluate``, :func:`weakseg.api.load_run`).

    A run directory may come from someone else, so its ``plugins:`` are imported only when they
    resolve to installed code: found on ``sys.path`` without ``''``, ``'.'``, the current folder and
    the run directory (site-packages, an editable install, ``PYTHONPATH``), and imported with that
    path. A plugin that only the working folder or the run directory provides is refused with a
    :class:`RecipeError` unless ``allow=True`` (``--allow-plugins``), which imports as training does.
    """
    modules = list(modules)
    if allow:
        import_plugins(modules, source)
        return
    import importlib.util

    trusted = _trusted_sys_path([Path.cwd(), run_dir])
    for i, module in enumerate(modules):
        if module in sys.modules:  # already imported: importing again runs nothing
            continue
        top = module.split(".")[0]
        saved = sys.path[:]
        sys.path[:] = trusted
        try:
            spec = importlib.util.find_spec(top)  # a top-level lookup runs no code
            if spec is not None:
                importlib.import_module(module)
        except ImportError as err:
            raise RecipeError(f"{source}: plugins[{i}]: cannot import {module!r} ({err})") from None
        except Exception as err:  # the installed plugin itself fails while importing
            raise RecipeError(f"{source}: plugins[{i}]: importing {module!r} failed "
                              f"({type(err).__name__}: {' '.join(str(err).split())})") from err
        finally:
            sys.path[:] = saved
        if spec is None:
            try:
                where = importlib.util.find_spec(top)
            except (ImportError, ValueError):
                where = None
            if where is None and not (Path.cwd() / f"{top}.py").exists() and not (Path(run_dir) / f"{top}.py").exists():
                raise RecipeError(f"{source}: plugins[{i}]: cannot import {module!r} (no installed module of that name)")
            raise RecipeError(
                f"{source}: plugins[{i}]: {module!r} is not an installed module, only a file in the working folder "
                "or the run directory; loading a run never imports such code. Install the plugin, or pass "
                "--allow-plugins (allow_plugins=True) if you trust this run directory and folder")


# -- learner checks -----------------------------------------------------------------------
def _init_params(cls: type) -> dict[str, Any]:
    import inspect

    sig = inspect.signature(cls.__init__)
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {p.name: p for p in sig.parameters.values() if p.name != "self" and p.kind in kinds}


def _check_learner(recipe: Recipe, source: str) -> None:
    """Check the learner name, parameter names and types (coercing them) and its engine settings.

    A learner that builds other learners from its parameters (``nested_learners``, e.g. ``mil_seg``'s
    ``mil_params`` / ``seg_params``) has those checked the same way, errors naming the key path
    (``learner.params.seg_params.lr``).
    """
    from .learners.base import LEARNERS

    import_plugins(recipe.plugins, source)
    try:
        cls = LEARNERS.get(recipe.learner.name)
    except WeaksegError as err:
        raise RecipeError(f"{source}: learner.name: {err}") from None
    recipe.learner.params = _check_params(cls, recipe.learner.name, dict(recipe.learner.params), source,
                                          "learner.params")
    learner = _build_checked(cls, recipe.learner_params(), source, "learner.params", nested=False)
    _check_nested(learner, recipe.learner.params, source, "learner.params")


def _check_params(cls: type, name: str, params: dict[str, Any], source: str, prefix: str) -> dict[str, Any]:
    """Parameter names and types of learner ``cls`` (values coerced); ``augment`` / ``stain_norm`` choices."""
    valid = _init_params(cls)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: check names only
        hints = {}
    for key, value in params.items():
        where = f"{source}: {prefix}.{key}"
        if key not in valid:
            raise RecipeError(f"{where}: {cls.__name__} ({name}) has no parameter {key!r}{_hint(key, valid)}")
        if key in hints:
            try:
                adapter = TypeAdapter(hints[key])
            except Exception:  # a type pydantic cannot check (e.g. an arbitrary class)
                continue
            try:
                params[key] = adapter.validate_python(value)
            except ValidationError as err:
                raise RecipeError(_format_errors(err, where, None, prefix=())) from None
    if "augment" in params:
        from .data.augment import parse_augment

        try:
            parse_augment(params["augment"])
        except WeaksegError as err:
            raise RecipeError(f"{source}: {prefix}.{err}") from None
    if params.get("stain_norm") is not None:
        from .data.stain import check_method

        try:
            check_method(params["stain_norm"])
        except WeaksegError as err:
            raise RecipeError(f"{source}: {prefix}.{err}") from None
    return params


def _build_checked(cls: type, params: dict[str, Any], source: str, prefix: str, *, nested: bool):
    """Create the learner and run its range checks and the engine's (errors name ``prefix``)."""
    try:
        learner = cls(**params)
        # ranges, finite numbers, choices, and (for torch learners) the engine's training settings
        learner._validate_params()
    except WeaksegError as err:
        text = str(err)
        first = text.split(" ", 1)[0]
        if nested and first in _init_params(cls) and " " in text:  # "lr must be ..." -> "….seg_params.lr: must be ..."
            raise RecipeError(f"{source}: {prefix}.{first}: {text.split(' ', 1)[1]}") from None
        raise RecipeError(f"{source}: {prefix}: {text}") from None
    return learner


def _check_nested(learner: Any, params: dict[str, Any], source: str, prefix: str) -> None:
    """Check the learners ``learner`` builds from its parameters (``nested_learners``: params key → name key)."""
    from .learners.base import LEARNERS

    nested = getattr(type(learner), "nested_learners", None) or {}
    for params_key, name_key in nested.items():
        name = getattr(learner, name_key, None)
        try:
            cls = LEARNERS.get(name)
        except WeaksegError as err:
            raise RecipeError(f"{source}: {prefix}.{name_key}: {err}") from None
        check_role = getattr(learner, "_check_nested_role", None)
        if check_role is not None:  # e.g. mil_seg's MIL stage must learn from slide labels
            try:
                check_role(name_key, cls)
            except WeaksegError as err:
                raise RecipeError(f"{source}: {prefix}.{name_key}: {err}") from None
        sub = getattr(learner, params_key, None) or {}
        if not isinstance(sub, dict):
            raise RecipeError(f"{source}: {prefix}.{params_key}: expected a mapping, got {type(sub).__name__}")
        where = f"{prefix}.{params_key}"
        sub = _check_params(cls, name, dict(sub), source, where)
        if params.get(params_key) is not None:
            params[params_key] = sub  # coerced values, as for the top level
        kw = dict(sub)
        valid = _init_params(cls)
        for key in ("device", "random_state"):  # what the outer learner passes down unless set
            if key in valid and hasattr(learner, key):
                kw.setdefault(key, getattr(learner, key))
        inner = _build_checked(cls, kw, source, where, nested=True)
        _check_nested(inner, sub, source, where)


# -- error formatting ---------------------------------------------------------------------
_EXPECTED = {
    "float": "a number", "int": "an integer", "bool": "true or false", "string": "a string",
    "dict": "a mapping", "model": "a mapping", "list": "a list", "tuple": "a list", "path": "a path",
}


def _hint(key: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (valid: {', '.join(valid)})" if valid else ""


def _model_at(model: type[BaseModel] | None, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at ``loc`` (None inside free-form mappings)."""
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *typing.get_args(annotation)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model


def _describe(error: dict[str, Any], model: type[BaseModel] | None) -> tuple[str, str]:
    loc = list(error["loc"])
    path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
    kind = error["type"]
    given = error.get("input")
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        valid = list(owner.model_fields) if owner is not None else []
        return path, f"unknown key {loc[-1]!r}{_hint(str(loc[-1]), valid)}"
    if kind == "missing":
        return path, "required key is missing"
    family = kind.split("_")[0]
    if family in _EXPECTED and kind.endswith(("_type", "_parsing", "_from_float")):
        return path, f"expected {_EXPECTED[family]}, got {given!r}"
    msg = error["msg"].removeprefix("Value error, ")
    return path, f"{msg}, got {given!r}" if "input" in error and not isinstance(given, dict) else msg


def _format_errors(err: ValidationError, source: str, model: type[BaseModel] | None,
                   prefix: Sequence[str] = ()) -> str:
    lines = []
    for error in err.errors():
        path, msg = _describe(error, model)
        path = ".".join([*prefix, path]) if path else ".".join(prefix)
        lines.append(f"{path}: {msg}" if path else msg)
    if len(lines) == 1:
        return f"{source}: {lines[0]}"
    return f"{source}: {len(lines)} errors\n" + "\n".join(f"  {line}" for line in lines)
