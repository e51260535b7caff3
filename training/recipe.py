"""The training recipe as data: one TOML file per model version in training/recipes/, read into typed parts.

A recipe fixes everything that decides the weights: the network (`UNetConfig`), the schedule and the
augmentation ranges (`TrainConfig`), the cross-validation, what is shipped (a final model on every subject or
one fold's model), and the model's name, version and changelog. The training CLI starts from `SHIPPED` or
`--recipe FILE`; its flags override single values (`load_recipe(path, overrides)`), so a variant is a file or a
few overrides, never an edit to the code, and the run's metadata.json records both. `RunConfig` adds what
only concerns one run (data, run folder, which part to train) and is what training passes around.
"""

from __future__ import annotations

import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from model.architecture import UNetConfig
from training.augment import Augmentation
from training.fit import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RECIPES = Path(__file__).with_name("recipes")
SHIPPED = RECIPES / "unet-1.4.0.toml"

# The tables of a recipe file and the keys each must hold (the dataclass fields they become, where they are one).
SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("name", "version"),
    "architecture": tuple(f.name for f in fields(UNetConfig)),
    "schedule": tuple(f.name for f in fields(TrainConfig) if f.name not in ("augment", "augmentation")),
    "augmentation": ("enabled", *(f.name for f in fields(Augmentation))),
    "cross_validation": ("folds", "val_fraction"),
    "shipped": (),  # exactly one of SHIP_CHOICES
    "changelog": (),  # version -> text
}
SHIP_CHOICES = ("final_epochs", "ship_fold")


class RecipeError(ValueError):
    """A recipe file (or an override of it) that cannot be trained; the message names the file and the key."""


@dataclass(frozen=True)
class Recipe:
    """What a training run trains. Two recipes are equal when they train the same thing, whatever their file."""

    name: str
    version: str
    changelog: Mapping[str, str]
    arch: UNetConfig
    train: TrainConfig
    folds: int
    val_fraction: float
    final_epochs: int | None  # None: no final model, `ship_fold`'s model is shipped
    ship_fold: int | None
    source: Path = field(compare=False)
    overrides: Mapping[str, Any] = field(default_factory=dict, compare=False)  # "section.key" -> value

    def provenance(self) -> dict:
        """The file and the overrides, as metadata.json records them."""
        source = self.source.resolve()
        shown = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
        return {"file": str(shown), "overrides": dict(self.overrides)}


@dataclass(frozen=True)
class RunConfig:
    """One training run: the recipe plus where it reads and writes and which part of it to do."""

    recipe: Recipe
    data: Path
    out: Path
    init_run: Path | None = None  # fine-tune: start every model from that run's
    only_fold: int | None = None
    only_final: bool = False
    finished_only: bool = False
    train_only: bool = False
    install: bool = False


def read_table(path: Path) -> dict:
    """The recipe file as TOML tables, with errors that name the file."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"{path}: not a readable TOML recipe ({exc})") from None


def load_recipe(path: Path = SHIPPED, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """The recipe in `path` with `overrides` ("section.key" -> value) applied, checked as a whole."""
    overrides = dict(overrides or {})
    raw = read_table(path)
    where = f"{path}" + (f" (with {', '.join(f'{k}={v}' for k, v in overrides.items())})" if overrides else "")
    tables = {name: dict(_table(raw, name, where)) for name in SECTIONS}
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise RecipeError(f"{where}: unknown table(s) {', '.join(unknown)}; a recipe has {', '.join(SECTIONS)}")
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in tables or not (name in SECTIONS[section] or section == "shipped" and name in SHIP_CHOICES):
            raise RecipeError(f"{where}: {key} is not a recipe value")
        if section == "shipped":  # one choice replaces the other
            tables["shipped"].clear()
        tables[section][name] = value
    return replace(_build(tables, where, path), overrides=MappingProxyType(overrides))


def recipe_for_version(version: str) -> Recipe | None:
    """The recipe in training/recipes/ that trains model `version`, if there is one."""
    for path in sorted(RECIPES.glob("*.toml")):
        if read_table(path).get("model", {}).get("version") == version:
            return load_recipe(path)
    return None


def _table(raw: dict, name: str, where: str) -> dict:
    table = raw.get(name)
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: the [{name}] table is missing")
    return table


def _build(tables: dict[str, dict], where: str, path: Path) -> Recipe:
    schedule = _typed(TrainConfig, tables["schedule"], "schedule", where, skip=("augment", "augmentation"))
    augmentation = dict(tables["augmentation"])
    enabled = augmentation.pop("enabled", None)
    if not isinstance(enabled, bool):
        raise RecipeError(f"{where}: [augmentation] enabled must be true or false")
    ranges = _make(Augmentation, _typed(Augmentation, augmentation, "augmentation", where), "augmentation", where)
    train = _make(TrainConfig, {**schedule, "augment": enabled, "augmentation": ranges}, "schedule", where)
    arch = _make(UNetConfig, _typed(UNetConfig, tables["architecture"], "architecture", where), "architecture", where)

    model = _typed_keys(tables["model"], {"name": str, "version": str}, "model", where)
    cv = _typed_keys(tables["cross_validation"], {"folds": int, "val_fraction": float}, "cross_validation", where)
    if cv["folds"] < 2:
        raise RecipeError(f"{where}: [cross_validation] folds must be at least 2")
    if not 0 <= cv["val_fraction"] < 1:
        raise RecipeError(f"{where}: [cross_validation] val_fraction must be in [0, 1)")
    shipped = tables["shipped"]
    if len(shipped) != 1 or next(iter(shipped)) not in SHIP_CHOICES:
        raise RecipeError(f"{where}: [shipped] must hold exactly one of {' or '.join(SHIP_CHOICES)}")
    choice = _typed_keys(shipped, {next(iter(shipped)): int}, "shipped", where)
    ship_fold = choice.get("ship_fold")
    if ship_fold is not None and not 0 <= ship_fold < cv["folds"]:
        raise RecipeError(f"{where}: [shipped] ship_fold {ship_fold} is not one of the folds 0-{cv['folds'] - 1}")
    changelog = tables["changelog"]
    if not all(isinstance(text, str) for text in changelog.values()) or model["version"] not in changelog:
        raise RecipeError(f"{where}: [changelog] needs a text for every version, this one ({model['version']}) too")
    return Recipe(
        name=model["name"],
        version=model["version"],
        changelog=MappingProxyType(dict(changelog)),
        arch=arch,
        train=train,
        folds=cv["folds"],
        val_fraction=cv["val_fraction"],
        final_epochs=choice.get("final_epochs"),
        ship_fold=ship_fold,
        source=path,
    )


def _typed(cls: type, table: dict, section: str, where: str, skip: tuple[str, ...] = ()) -> dict:
    """`table`'s values for the fields of dataclass `cls` (minus `skip`), type-checked against its annotations."""
    hints = typing.get_type_hints(cls)
    return _typed_keys(table, {f.name: hints[f.name] for f in fields(cls) if f.name not in skip}, section, where)


def _typed_keys(table: dict, types: dict[str, Any], section: str, where: str) -> dict:
    missing = [key for key in types if key not in table]
    unknown = [key for key in table if key not in types]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown {', '.join(unknown)}")
    if problems:
        raise RecipeError(f"{where}: [{section}] {'; '.join(problems)}")
    return {key: _coerce(table[key], kind, f"{where}: [{section}] {key}") for key, kind in types.items()}


def _coerce(value: Any, kind: Any, what: str) -> Any:
    """`value` as `kind` (int, float, bool, str or tuple[float, float]); an int is a float, a bool is neither."""
    if typing.get_origin(kind) is tuple:
        items = typing.get_args(kind)
        if isinstance(value, list | tuple) and len(value) == len(items):
            return tuple(_coerce(v, t, what) for v, t in zip(value, items, strict=True))
        raise RecipeError(f"{what} = {value!r}: expected a list of {len(items)} numbers")
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise RecipeError(f"{what} = {value!r}: expected {getattr(kind, '__name__', kind)}")


def _make(cls: type, values: dict, section: str, where: str) -> Any:
    """`cls(**values)`, its own checks (e.g. the input divisible by 2**depth) reported as recipe errors."""
    try:
        return cls(**values)
    except ValueError as exc:
        raise RecipeError(f"{where}: [{section}] {exc}") from None


def artifact_augmentation(meta: dict) -> Augmentation | None:
    """The augmentation ranges an artifact's weights were trained with: recorded in its metadata.json by
    training, else (an artifact written before they were) those of the recipe of its version; None when
    neither says."""
    recorded = meta.get("training", {}).get("augmentation")
    if recorded is not None:
        hints = typing.get_type_hints(Augmentation)
        return Augmentation(**{key: _coerce(value, hints[key], key) for key, value in recorded.items()})
    recipe = recipe_for_version(meta.get("version", ""))
    return recipe.train.augmentation if recipe else None
