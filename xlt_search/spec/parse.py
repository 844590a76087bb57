"""From YAML to the spec's dataclasses, and back: keys and types checked field by field.

Every mistake is one line that names the key and the fix; a typo'd key, at any nesting level,
suggests the right one. The rules across keys are `xlt_search.spec.checks`'.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from xlt_search.errors import SpecError, did_you_mean
from xlt_search.spec.checks import check_spec
from xlt_search.spec.schema import DOMAIN_KINDS, HYPERPARAMETERS, Domain, SearchSpec
from xlt_search.spec.source import SpecSource, read_spec
from xlt_search.tasks import POOLS, REGISTRY, Language, Task


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SearchSpec:
    """Read and validate a spec file, the specs it extends merged and `overrides` (`--set
    KEY.PATH=VALUE`) applied; any problem raises a one-line UserError."""
    return parse_source(read_spec(path, overrides))


def parse_source(source: SpecSource) -> SearchSpec:
    """Validate a spec file read by `read_spec`; a problem's line starts with the file's path."""
    try:
        return parse_spec(source.raw)
    except SpecError as error:
        raise SpecError(f"{source.path}: {error}") from None


def parse_spec(raw: Any) -> SearchSpec:
    """Validate a spec given as plain data (what YAML parses to)."""
    if not isinstance(raw, dict):
        raise SpecError(
            "the spec must be a mapping of keys (name, model, pool, targets, budget, ...)"
        )
    raw = dict(raw)
    hyperparameters = _parse_hyperparameters(raw.pop("hyperparameters", None) or {})
    languages = _parse_languages(raw.pop("languages", None) or {})
    tasks = _parse_tasks(raw.pop("tasks", None) or {})
    if "targets" in raw:
        raw["targets"] = [{"task": t} if isinstance(t, str) else t for t in _targets(raw)]
    if isinstance(raw.get("pool"), str):
        raw["pool"] = _named_pool(raw["pool"], tasks)
    spec = _build(SearchSpec, raw, "")
    spec = dataclasses.replace(
        spec, hyperparameters=hyperparameters, tasks=tasks, languages=languages
    )
    check_spec(spec)
    return spec


def _targets(raw: dict[str, Any]) -> list[Any]:
    """The spec's targets as a list; one task written where the list belongs is refused."""
    targets = raw["targets"] or []
    if isinstance(targets, str):
        raise SpecError(
            f"targets: expected a list of target tasks, got the string {targets!r}; write "
            f"targets: [{targets}] (or one '- task: {targets}' line per target)"
        )
    if not isinstance(targets, list):
        raise SpecError(f"targets: expected a list of target tasks, got {targets!r}")
    return targets


def _named_pool(name: str, tasks: dict[str, Task]) -> list[str]:
    """The tasks of the pool `name` (one of POOLS), or `name` alone when it is a task."""
    if name in POOLS:
        return list(POOLS[name])
    if name in REGISTRY or name in tasks:
        return [name]
    raise SpecError(
        f"pool: '{name}' is not a named pool{did_you_mean(name, [*POOLS, *REGISTRY, *tasks])}; "
        f"name one ({', '.join(POOLS)}) or list the tasks (pool: [mnli, qqp, ...])"
    )


def _parse_hyperparameters(raw: Any) -> dict[str, Domain]:
    if not isinstance(raw, dict):
        raise SpecError("hyperparameters: expected a mapping of name -> value or domain")
    domains = {}
    for name, value in raw.items():
        if name not in HYPERPARAMETERS:
            raise SpecError(
                f"hyperparameters: unknown hyperparameter '{name}'"
                f"{did_you_mean(name, HYPERPARAMETERS)}; known: {', '.join(HYPERPARAMETERS)}"
            )
        domains[name] = _parse_domain(name, value, HYPERPARAMETERS[name])
    return domains


def _parse_domain(name: str, value: Any, kind: type) -> Domain:
    key = f"hyperparameters.{name}"
    if not isinstance(value, dict):
        return Domain("constant", (_coerce(value, kind, key),))
    if len(value) != 1:
        raise SpecError(f"{key}: a domain has one key, one of {', '.join(DOMAIN_KINDS)}")
    ((domain_kind, args),) = value.items()
    if domain_kind not in DOMAIN_KINDS:
        raise SpecError(
            f"{key}: unknown domain '{domain_kind}'{did_you_mean(domain_kind, DOMAIN_KINDS)}; "
            f"use one of {', '.join(DOMAIN_KINDS)}"
        )
    if not isinstance(args, list) or not args:
        raise SpecError(f"{key}.{domain_kind}: expected a list, e.g. {domain_kind}: [low, high]")
    values = tuple(_coerce(arg, kind, key) for arg in args)
    if domain_kind not in ("choice", "grid"):
        if kind is str or len(values) != 2 or not values[0] < values[1]:
            raise SpecError(f"{key}.{domain_kind}: expected [low, high] numbers with low < high")
        if domain_kind == "loguniform" and values[0] <= 0:
            raise SpecError(f"{key}.loguniform: the low end must be > 0")
    return Domain(domain_kind, values)


def _coerce(value: Any, kind: type, key: str) -> Any:
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:  # YAML reads 1e-3 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise SpecError(f"{key}: expected {kind.__name__}, got {value!r}")


def _parse_languages(raw: Any) -> dict[str, Language]:
    if not isinstance(raw, dict):
        raise SpecError("languages: expected a mapping of code -> {name, family, script}")
    return {
        code: _build(Language, {"code": code, **(fields or {})}, f"languages.{code}.")
        for code, fields in raw.items()
    }


def _parse_tasks(raw: Any) -> dict[str, Task]:
    """The spec's `tasks:` section: a registered task's key with the fields to change (e.g. its
    sources, to read a local copy), or a new key with a whole declaration."""
    if not isinstance(raw, dict):
        raise SpecError("tasks: expected a mapping of task key -> declaration or changes")
    tasks = {}
    for key, fields in raw.items():
        where = f"tasks.{key}"
        if not isinstance(fields, dict):
            raise SpecError(f"{where}: expected a mapping of task fields, got {fields!r}")
        if "key" in fields:
            raise SpecError(f"{where}: the key is the mapping's name; remove 'key'")
        if key in REGISTRY:
            changes = _build(Task, {"key": key, **fields}, f"{where}.", partial=True)
            tasks[key] = dataclasses.replace(REGISTRY[key], **changes)
        else:
            tasks[key] = _build(Task, {"key": key, **fields}, f"{where}.")
    return tasks


def _build(cls: type, raw: Any, prefix: str, partial: bool = False) -> Any:
    """Build dataclass `cls` from a mapping, checking keys and types field by field.

    With `partial`, return only the converted fields that `raw` gives (changes to an instance).
    """
    where = prefix.rstrip(".") or "the spec"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise SpecError(
                f"unknown key '{prefix}{key}'{did_you_mean(str(key), fields)}; "
                f"{where} takes: {', '.join(fields)}"
            )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in raw:
            missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if missing and not partial:
                raise SpecError(f"missing key '{prefix}{name}'")
            continue
        values[name] = _convert(raw[name], hints[name], f"{prefix}{name}")
    return values if partial else cls(**values)


def _convert(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for inner in options[:-1]:  # the first that fits (str before a list of str)
            try:
                return _convert(value, inner, key)
            except SpecError:
                continue
        return _convert(value, options[-1], key)
    if origin is Literal:
        if value not in args:
            raise SpecError(
                f"{key}: '{value}' is not one of {', '.join(map(str, args))}"
                f"{did_you_mean(str(value), map(str, args))}"
            )
        return value
    if origin is tuple:
        if isinstance(value, str | int):
            value = [value]
        if not isinstance(value, list):
            raise SpecError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(item, args[0], f"{key}[{i}]") for i, item in enumerate(value))
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise SpecError(f"{key}: expected a mapping, got {value!r}")
        return {str(name): _convert(item, args[1], f"{key}.{name}") for name, item in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or isinstance(value, bool) and hint is not bool:
        raise SpecError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def spec_to_dict(spec: SearchSpec) -> dict[str, Any]:
    """The spec as plain data that `parse_spec` reads back (defaults made explicit)."""
    data = dataclasses.asdict(spec)
    for task in data["tasks"].values():
        task.pop("key")
    for language in data["languages"].values():
        language.pop("code")
    data["hyperparameters"] = {
        name: domain.values[0] if domain.kind == "constant" else {domain.kind: list(domain.values)}
        for name, domain in spec.hyperparameters.items()
    }
    return _plain(data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
