"""The spec's rules across keys, each checked once: what a well-typed spec must also satisfy to run.

`check_spec` runs one check per concern in a fixed order; the first problem raises a one-line
SpecError that names the key and the fix.
"""

from __future__ import annotations

import collections.abc
import glob
import math
import os
import re

from xlt_search.errors import SpecError, did_you_mean
from xlt_search.spec.control_checks import check_controls
from xlt_search.spec.schema import SearchSpec, TargetSpec
from xlt_search.spec.training_checks import (
    check_budget,
    check_hyperparameters,
    check_resources,
    check_rs_da,
)
from xlt_search.tasks import Task, get_language, get_task
from xlt_search.tasks.base import KIND_FIELDS, MIXED_PARTS, OPTIONAL_FIELDS, DataSource
from xlt_search.tracking import check_tracking_scheme

# The splits a task's `files` may name.
SPLITS: tuple[str, ...] = ("train", "validation", "test")

# The largest seed: Optuna's TPE sampler seeds numpy's RandomState, which takes 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1
# Caps past which a value is a slip, not a plan (the shipped specs train on 256 tokens, in at most
# 26 trials; the phases' cap is in training_checks).
MAX_SEQ_LENGTH = 8192
MAX_COUNT = 10_000  # trials of a random, optuna or guided search; training seeds per configuration
# A search's name names its results folder (<storage_path>/<name>-<time>).
MAX_NAME_CHARS = 100
_NAME_CHARACTERS = re.compile(r"[A-Za-z0-9._-]")


def check_spec(spec: SearchSpec) -> None:
    """Every rule across the spec's keys; the first that fails raises a one-line SpecError."""
    check_name(spec)
    check_paths(spec)
    check_tasks(spec)
    check_pool(spec)
    check_targets(spec)
    check_data(spec)
    check_subsets(spec)
    check_controls(spec)
    check_budget(spec)
    check_resources(spec)
    check_hyperparameters(spec)
    check_rs_da(spec)
    check_mlflow(spec)


def check_name(spec: SearchSpec) -> None:
    """The search's name names its results folder: one safe folder name, never a path."""
    problem = _name_problem(spec.name)
    if problem:
        raise SpecError(
            f"name: {spec.name!r} cannot name the search's results folder ({problem}); use "
            "letters, digits, '.', '_' and '-', starting with a letter or digit, at most "
            f"{MAX_NAME_CHARS} characters (e.g. my_search-v1)"
        )


def _name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if "\0" in name:
        return "it holds a NUL byte"
    for separator in ("/", "\\"):
        if separator in name:
            return f"it holds {separator!r}, a path separator"
    if ".." in name:
        return "it holds '..'"
    if name[0] in ".-":
        return f"it starts with {name[0]!r}"
    if len(name) > MAX_NAME_CHARS:
        return f"it is {len(name)} characters long"
    odd = sorted(set(_NAME_CHARACTERS.sub("", name)))
    return f"it holds {', '.join(map(repr, odd))}" if odd else None


def check_paths(spec: SearchSpec) -> None:
    """The paths the spec names hold no NUL byte, which no file system takes."""
    for key, path in (
        ("model", spec.model),
        ("storage_path", spec.storage_path),
        ("data.cache_dir", spec.data.cache_dir),
        ("data.mirror", spec.data.mirror),
    ):
        if path is not None and "\0" in path:
            raise SpecError(f"{key}: {path!r} holds a NUL byte, which no path can hold; remove it")


def check_tasks(spec: SearchSpec) -> None:
    """Each task the spec declares or changes: its columns fit its kind, its metric applies, its
    labels agree, its files name known splits, its languages and training tasks exist."""
    # Imported here: metrics imports torch, which a spec's check does not otherwise need.
    from xlt_search.metrics import METRICS_BY_KIND

    registry, languages = spec.registry, spec.known_languages
    for task in spec.tasks.values():
        where = f"tasks.{task.key}"
        _check_columns(task, where)
        if task.metric not in METRICS_BY_KIND[task.kind]:
            raise SpecError(
                f"{where}.metric: '{task.metric}' does not apply to {task.kind} tasks; use one of "
                f"{', '.join(METRICS_BY_KIND[task.kind])}"
            )
        if task.metric == "entity_f1" and not any(name.startswith("B-") for name in task.labels):
            raise SpecError(
                f"{where}.metric: entity_f1 reads entities from BIO tags; declare the task's "
                "labels (e.g. [O, B-PER, I-PER, ...])"
            )
        if task.labels and len(task.labels) != task.num_labels:
            raise SpecError(
                f"{where}: {len(task.labels)} labels named but num_labels is {task.num_labels}"
            )
        if task.kind in ("classification", "tagging") and task.num_labels < 2:
            raise SpecError(f"{where}.num_labels: a {task.kind} task needs at least 2 labels")
        _check_files(task, where)
        _check_shares(task, where)
        for code in task.languages:
            get_language(code, languages)
        for key in task.train_tasks:
            if get_task(key, registry).kind != task.kind:
                raise SpecError(f"{where}.train_tasks: {key} is not a {task.kind} task")


def _check_columns(task: Task, where: str) -> None:
    fields = KIND_FIELDS[task.kind]
    for name in task.columns:
        if name not in fields:
            raise SpecError(
                f"{where}.columns: '{name}' is not a field of {task.kind} tasks"
                f"{did_you_mean(name, fields)}; they read {', '.join(fields)}"
            )
    for name in fields:
        if name not in task.columns and name not in OPTIONAL_FIELDS:
            raise SpecError(
                f"{where}.columns: map a column to '{name}' ({task.kind} tasks read it)"
            )


def _check_shares(task: Task, where: str) -> None:
    """Shares carve splits the source maps, all from one source split, each share in (0, 1]."""
    for i, source in enumerate(task.sources):
        targets, shares = {source.splits.get(s) for s in source.shares}, source.shares.values()
        if shares and (None in targets or len(targets) > 1 or min(shares) <= 0 or sum(shares) > 1):
            raise SpecError(
                f"{where}.sources[{i}].shares: every split it names must map (in splits) to one "
                "and the same source split, with shares above 0 that sum to at most 1"
            )


def _check_files(task: Task, where: str) -> None:
    if task.files is not None and task.layout is None:
        raise SpecError(
            f"{where}.files: {task.key} declares no layout of its authors' files; read your files "
            "through sources instead (path: json, data_files: ...)"
        )
    if isinstance(task.files, collections.abc.Mapping):
        for split in task.files:
            if split not in SPLITS:
                raise SpecError(
                    f"{where}.files: unknown split '{split}'{did_you_mean(split, SPLITS)}; "
                    f"files maps {', '.join(SPLITS)} to paths"
                )


def check_pool(spec: SearchSpec) -> None:
    """The pool of intermediate tasks: not empty, no task twice (so no subset holds a task twice),
    nothing that cannot be trained."""
    if not spec.pool:
        raise SpecError("pool: the pool of intermediate tasks is empty; list at least one task")
    for key in spec.pool:
        if spec.pool.count(key) > 1:
            raise SpecError(f"pool: {key} is listed twice; list each task once")
    for key in spec.pool:
        if get_task(key, spec.registry).kind == "retrieval":
            raise SpecError(
                f"pool: {key} is a retrieval task, which has nothing to train on; remove it"
            )


def check_targets(spec: SearchSpec) -> None:
    """The targets: at least one, each once, with data in the languages asked for (mixed ones
    too), one of them not English, and English training data that fits the target's head."""
    registry, languages = spec.registry, spec.known_languages
    if not spec.targets:
        raise SpecError("targets: list at least one target task")
    keys = [target.task for target in spec.targets]
    for key in (key for key in keys if keys.count(key) > 1):
        raise SpecError(f"targets: {key} is listed twice; list each target once")
    for target in spec.targets:
        task = get_task(target.task, registry)
        if task.kind == "parallel":
            raise SpecError(
                f"targets: {target.task} is a parallel task, which trains the encoder but scores "
                "no transfer; move it to the pool"
            )
        for code in (*target.languages, *target.mixed_languages):
            get_language(code, languages)
            if code not in task.languages:
                raise SpecError(
                    f"targets: {target.task} has no '{code}' data; "
                    f"its languages are {', '.join(task.languages)}"
                )
        if not any(code != "en" for code in target.languages or task.languages):
            raise SpecError(
                f"targets: {target.task} needs at least one non-English language to score transfer"
            )
        if target.mixed_languages:
            _check_mixed_languages(target, task)
    for target in spec.fine_tuned_targets:
        _check_training_data(registry[target.task], registry)
    _check_held_out(spec)


def _check_held_out(spec: SearchSpec) -> None:
    """No pool task trains on rows a target is scored on (tatoeba_parallel reads the validation
    split of google/xtreme's tatoeba configs, the very pairs the tatoeba target retrieves; read
    from LASER's files, the same pairs' files). Hub sources are compared with hub sources, files
    with files."""
    registry = spec.registry
    for target in spec.targets:
        task = get_task(target.task, registry)
        scored = {
            row
            for lang in target.languages or task.languages
            for split in ("validation", "test")
            for row in _split_rows(task, split, lang)
        }
        for key in spec.pool:
            overlap = sorted(_split_rows(registry[key], "train", "en") & scored)
            if overlap:
                path, name, _, part = overlap[0]
                raise SpecError(
                    f"pool: {key} trains on {path} {name} {part.split('#')[0]}".rstrip()
                    + f", which target {target.task} is scored on; remove {key} from the pool "
                    f"or {target.task} from the targets"
                )


def _split_rows(task: Task, split: str, lang: str) -> set[tuple[str, str, str, str]]:
    """What one split of a task reads in `lang`: its sources' splits, or with `files` set the
    files (a Moses pair by its name without the side, NAME.L1-L2, which both sides share)."""
    if task.files is None:
        return {row for source in task.sources for row in _source_rows(source, split, lang)}
    template = task.split_files(split)
    if template is None or task.layout is None:
        return set()
    pattern = os.path.expanduser(template.replace("{lang}", task.layout.code(lang)))
    paths = {os.path.abspath(path) for path in glob.glob(pattern)}
    if task.layout.format == "moses":
        paths = {os.path.splitext(path)[0] for path in paths}
    return {(path, "", "", "") for path in paths}


def _source_rows(source: DataSource, split: str, lang: str) -> set[tuple[str, str, str, str]]:
    """What one split of a source reads in `lang`: (path, config, data files, source split, with
    the share it takes of that split), one entry per source split it joins."""
    if split not in source.splits:
        return set()
    code = source.code(lang)
    name = (source.name or "").replace("{lang}", code)
    files = (source.data_files or {}).get(split, "").replace("{lang}", code)
    share = f"#{split}" if split in source.shares else ""
    parts = source.splits[split].replace("{lang}", code).split("+")
    return {(source.path, name, files, part + share) for part in parts}


def _check_mixed_languages(target: TargetSpec, task: Task) -> None:  # two parts, two languages
    where, codes = f"targets: {target.task}.mixed_languages", target.mixed_languages
    if task.kind not in MIXED_PARTS or task.column(MIXED_PARTS[task.kind][0]) is None:
        raise SpecError(
            f"{where}: {target.task} is a {task.kind} task with no two parts to put in two "
            "languages; remove mixed_languages (pair classification, span QA, multiple choice)"
        )
    twice = [code for code in codes if codes.count(code) > 1]
    if twice or len(codes) < 2:
        problem = f"{twice[0]} is listed twice" if twice else f"{len(codes)} language"
        raise SpecError(f"{where}: {problem}; list at least 2 languages, each once")


def _check_training_data(target: Task, registry: dict[str, Task]) -> None:
    """A fine-tuned target trains one head on its `train_tasks` (or on itself): each must be of
    its kind, and of its number of labels where the head has one output per label."""
    for key in target.train_tasks or (target.key,):
        source = get_task(key, registry)
        if source.kind != target.kind or (
            target.kind in ("classification", "tagging") and source.num_labels != target.num_labels
        ):
            raise SpecError(
                f"targets: {target.key} trains on {key}, a {source.kind} task with "
                f"{source.num_labels} labels; it must match the target's kind and labels "
                f"({target.kind}, {target.num_labels})"
            )


def check_data(spec: SearchSpec) -> None:
    """The data section: caps on known training tasks, at least 1 example, a usable length."""
    data = spec.data
    for key, cap in data.max_train_examples_per_task.items():
        task = get_task(key, spec.registry)
        if task.train_tasks:
            raise SpecError(
                f"data.max_train_examples_per_task.{key}: {key} trains on "
                f"{' and '.join(task.train_tasks)}; cap {task.train_tasks[0]} instead"
            )
        if cap < 1:
            raise SpecError(f"data.max_train_examples_per_task.{key}: must be at least 1")
    if data.max_train_examples is not None and data.max_train_examples < 1:
        raise SpecError("data.max_train_examples: must be at least 1 (or null for no cap)")
    if data.max_seq_length < 8:
        raise SpecError("data.max_seq_length: must be at least 8")
    if data.max_seq_length > MAX_SEQ_LENGTH:
        raise SpecError(
            f"data.max_seq_length: {data.max_seq_length} is past the cap of {MAX_SEQ_LENGTH} "
            "tokens (XLM-R and mBERT take 512; the model's own limit is checked when the data is "
            "prepared); lower it"
        )


def check_subsets(spec: SearchSpec) -> None:
    """The subsets and seeds: sizes the pool allows, positive counts, and what a sampler that
    picks live (optuna, guided) cannot do: run the baseline or a grid, repeat over seeds."""
    subsets = spec.subsets
    for size in subsets.sizes:
        if not 1 <= size <= len(spec.pool):
            raise SpecError(
                f"subsets.sizes: size {size} is impossible with a pool of {len(spec.pool)} tasks; "
                f"use sizes from 1 to {len(spec.pool)}"
            )
    for name in ("per_size", "num_samples"):
        if getattr(subsets, name) < 1:
            raise SpecError(f"subsets.{name}: must be at least 1")
    if subsets.num_samples > MAX_COUNT:
        raise SpecError(
            f"subsets.num_samples: {subsets.num_samples} is past the cap of {MAX_COUNT:,} "
            "trials; lower it"
        )
    live = subsets.sampler if subsets.picks_live else None
    space = sum(math.comb(len(spec.pool), k) for k in spec.sizes)
    if subsets.sampler == "guided" and subsets.num_samples > space:
        raise SpecError(
            f"subsets.num_samples: {subsets.num_samples} trials, but the sizes allowed hold "
            f"{space} subsets and the guided sampler proposes each once; lower it to {space}"
        )
    if live and subsets.baseline:
        raise SpecError(
            f"subsets.baseline: the {live} sampler picks every trial itself and cannot run the "
            "baseline; remove the key, or run the baseline in a spec with sampler: grid"
        )
    if spec.seeds < 1:
        raise SpecError("seeds: must be at least 1")
    if spec.seeds > MAX_COUNT:
        raise SpecError(f"seeds: {spec.seeds} is past the cap of {MAX_COUNT:,} seeds; lower it")
    if not 0 <= spec.seed <= MAX_SEED:
        raise SpecError(
            f"seed: {spec.seed} is outside 0 to {MAX_SEED} (2**32 - 1), the seeds numpy's and "
            "Optuna's random generators take; use a seed in that range"
        )
    if spec.seed + spec.seeds - 1 > MAX_SEED:
        raise SpecError(
            f"seeds: {spec.seeds} training seeds from seed {spec.seed} run past {MAX_SEED} "
            "(2**32 - 1); lower seed"
        )
    grids = [name for name, d in spec.hyperparameters.items() if d.kind == "grid"]
    if grids and live:
        raise SpecError(
            f"hyperparameters.{grids[0]}: the {live} sampler picks every value itself and runs no "
            "grid; write choice in place of grid, or use a stratified, random or grid sampler"
        )
    if spec.seeds > 1 and live:
        raise SpecError(
            f"seeds: the {live} sampler picks each configuration once; use seeds: 1, or a "
            "stratified, random or grid sampler to repeat configurations over seeds"
        )


def check_mlflow(spec: SearchSpec) -> None:
    """The tracking URI names a store MLflow serves (no network: the server is checked later)."""
    check_tracking_scheme(spec.tracking_uri)
