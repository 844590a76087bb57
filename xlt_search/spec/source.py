"""A spec file as plain data, before it is validated: YAML read with duplicate keys refused, an
`extends:` chain merged, and command-line overrides (`--set key.path=value`) applied.

`xlt_search.spec.parse` turns the result into the spec's dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xlt_search.errors import SpecError, UserError

EXTENDS = "extends"  # the key naming the spec a spec is based on
# Mappings whose values replace the base's whole instead of merging into it: a hyperparameter's
# domain ({choice: [...]}) merged with another ({loguniform: [...]}) would be neither.
_REPLACED_WHOLE = (("hyperparameters",),)


@dataclass(frozen=True)
class SpecSource:
    """A spec file read: the effective spec as plain data, and its text to keep with the search.

    `text` is the file's own when nothing was merged into it or set on it; else the effective
    spec as YAML, so that what is logged reads back as the spec that ran.
    """

    path: Path
    raw: Any
    text: str


def read_spec(path: str | Path, overrides: Sequence[str] = ()) -> SpecSource:
    """Read the spec at `path`, merge the specs it extends, apply `overrides` (`KEY.PATH=VALUE`).

    Any problem raises a one-line UserError naming the file, the key or the override.
    """
    path = Path(path)
    raw, chain = _read_chain(path, ())
    if overrides:
        if not isinstance(raw, dict):
            raise SpecError(f"{path}: --set needs a spec that is a mapping of keys")
        for override in overrides:
            keys, value = parse_override(override)
            _set(raw, keys, value, override)
    if len(chain) == 1 and not overrides:
        return SpecSource(path, raw, path.read_text())
    # --set keys only: their values are in the spec below, not copied again into a comment (a
    # tracking URI's password among them)
    made_of = [f"extends {p.name}" for p in chain[1:]]
    made_of += [f"--set {override.partition('=')[0].strip()}" for override in overrides]
    header = f"# the effective spec of {path} ({'; '.join(made_of)})\n"
    return SpecSource(path, raw, header + yaml.safe_dump(raw, sort_keys=False))


def read_yaml(path: Path) -> Any:
    """The YAML file at `path` as plain data; a key given twice in a mapping is refused."""
    if path.is_dir():
        specs = sorted(p.name for p in path.glob("*.yaml"))
        hint = (
            f"give one of its specs ({', '.join(specs[:5])}{', ...' if len(specs) > 5 else ''})"
            if specs
            else "it holds no .yaml file"
        )
        raise UserError(f"{path} is a folder, not a spec file; {hint}")
    if not path.is_file():
        raise UserError(f"{path}: no such spec file; the shipped ones are in search_spaces/")
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except _DuplicateKey as duplicate:
        raise SpecError(f"{path}: {duplicate}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise SpecError(f"{path}: malformed YAML{where}: {problem}") from None


def parse_override(override: str) -> tuple[list[str], Any]:
    """`KEY.PATH=VALUE` as its keys and its value, read as YAML (`3`, `1.0e-5`, `[mnli, qqp]`,
    `{loguniform: [1.0e-5, 1.0e-3]}`; nothing after `=` is null)."""
    dotted, equals, text = override.partition("=")
    keys = dotted.strip().split(".")
    if not equals or not all(keys):
        raise UserError(
            f"--set {override}: expected KEY.PATH=VALUE, e.g. --set budget.target_steps=200"
        )
    if keys[0] == EXTENDS:
        raise UserError(f"--set {override}: {EXTENDS} is read from the file; write it in the spec")
    try:
        value = yaml.load(text, Loader=_UniqueKeyLoader)
    except (_DuplicateKey, yaml.YAMLError) as error:
        problem = getattr(error, "problem", None) or str(error)
        raise UserError(f"--set {override}: the value is not valid YAML ({problem})") from None
    return keys, value


def merge(base: dict[str, Any], child: dict[str, Any], where: tuple[str, ...] = ()) -> dict:
    """`child` over `base`: mappings merge key by key, at every level; lists and other values
    (and a hyperparameter's domain) replace the base's."""
    merged = dict(base)
    for key, value in child.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict) and where not in _REPLACED_WHOLE:
            merged[key] = merge(below, value, (*where, key))
        else:
            merged[key] = value
    return merged


def _read_chain(path: Path, seen: tuple[Path, ...]) -> tuple[Any, tuple[Path, ...]]:
    """The spec at `path` merged over the specs it extends, and the files read, `path` first."""
    chain = (*seen, path.resolve())
    raw = read_yaml(path)
    if not isinstance(raw, dict) or EXTENDS not in raw:
        return raw, (path,)
    raw = dict(raw)
    name = raw.pop(EXTENDS)
    if not isinstance(name, str) or not name.strip():
        raise SpecError(
            f"{path}: {EXTENDS}: expected the path of a spec file, relative to this spec's "
            f"folder (e.g. {EXTENDS}: base.yaml), got {name!r}"
        )
    base_path = path.parent / name
    if base_path.resolve() in chain:
        cycle = " -> ".join(p.name for p in (*chain, base_path.resolve()))
        raise SpecError(
            f"{path}: {EXTENDS}: {name} makes a cycle ({cycle}); a spec cannot extend itself, "
            "directly or through another"
        )
    if not base_path.exists():
        raise SpecError(f"{path}: {EXTENDS}: {name}: no such spec file ({base_path.resolve()})")
    base, read = _read_chain(base_path, chain)
    if not isinstance(base, dict):
        raise SpecError(f"{path}: {EXTENDS}: {name} is not a mapping of keys")
    return merge(base, raw), (path, *read)


def _set(raw: dict[str, Any], keys: list[str], value: Any, override: str) -> None:
    """Set `raw[keys[0]][keys[1]]... = value`, making the mappings on the way that are missing."""
    for i, key in enumerate(keys[:-1]):
        below = raw.setdefault(key, {})
        if not isinstance(below, dict):
            where = ".".join(keys[: i + 1])
            raise UserError(f"--set {override}: {where} is {below!r} in the spec, not a mapping")
        raw = below
    raw[keys[-1]] = value


class _DuplicateKey(Exception):
    """A mapping of a YAML file that gives one key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice (the safe loader keeps the
    last silently). A merge key (`<<: *base`) may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in lines:
                    raise _DuplicateKey(
                        f"key '{key}' is given twice, at lines {lines[key]} and {line} (YAML "
                        "would keep the last silently); keep one"
                    )
                lines[key] = line
            except TypeError:  # an unhashable key: the safe loader's own error names it
                continue
        return super().construct_mapping(node, deep=deep)
