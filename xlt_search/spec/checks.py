"""The spec's rules across keys: what a well-typed spec must also satisfy to run."""

from __future__ import annotations

import collections.abc
import math

from xlt_search.errors import SpecError, did_you_mean
from xlt_search.spec.schema import SearchSpec
from xlt_search.tasks import Language, Task
from xlt_search.tasks.base import KIND_FIELDS, OPTIONAL_FIELDS

SAMPLERS = ("stratified", "random", "grid", "optuna")
SCHEDULERS = ("asha", "fifo")
TASK_SAMPLERS = ("proportional", "temperature", "uniform")
SPLITS = ("train", "validation", "test")


def check_spec(spec: SearchSpec) -> None:
    """Checks across keys: known tasks and languages, feasible sizes, positive budgets."""
    from xlt_search.tasks import get_language, get_task
    from xlt_search.tracking import check_tracking_scheme

    def fail(message: str) -> None:
        raise SpecError(message)

    registry, languages = spec.registry, spec.known_languages
    for task in spec.tasks.values():
        _check_task(task, registry, languages)
    if not spec.pool:
        fail("pool: the pool of intermediate tasks is empty; list at least one task")
    if len(set(spec.pool)) != len(spec.pool):
        fail("pool: a task is listed twice")
    for key in spec.pool:
        if get_task(key, registry).kind == "retrieval":
            fail(f"pool: {key} is a retrieval task, which has nothing to train on; remove it")
    if not spec.targets:
        fail("targets: list at least one target task")
    for target in spec.targets:
        task = get_task(target.task, registry)
        for code in target.languages:
            get_language(code, languages)
            if code not in task.languages:
                fail(
                    f"targets: {target.task} has no '{code}' data; "
                    f"its languages are {', '.join(task.languages)}"
                )
        if len([c for c in (target.languages or task.languages) if c != "en"]) == 0:
            fail(
                f"targets: {target.task} needs at least one non-English language to score transfer"
            )
    for key, cap in spec.data.max_train_examples_per_task.items():
        task = get_task(key, registry)
        if task.train_tasks:
            fail(
                f"data.max_train_examples_per_task.{key}: {key} trains on "
                f"{' and '.join(task.train_tasks)}; cap {task.train_tasks[0]} instead"
            )
        if cap < 1:
            fail(f"data.max_train_examples_per_task.{key}: must be at least 1")
    if spec.data.max_train_examples is not None and spec.data.max_train_examples < 1:
        fail("data.max_train_examples: must be at least 1 (or null for no cap)")
    for size in spec.subsets.sizes:
        if not 1 <= size <= len(spec.pool):
            fail(
                f"subsets.sizes: size {size} is impossible with a pool of {len(spec.pool)} tasks; "
                f"use sizes from 1 to {len(spec.pool)}"
            )
    for name in ("per_size", "num_samples"):
        if getattr(spec.subsets, name) < 1:
            fail(f"subsets.{name}: must be at least 1")
    if spec.subsets.sampler == "optuna" and spec.subsets.baseline:
        fail(
            "subsets.baseline: the optuna sampler picks every trial itself and cannot run the "
            "baseline; remove the key, or run the baseline in a spec with sampler: grid"
        )
    if spec.seeds < 1:
        fail("seeds: must be at least 1")
    if spec.seeds > 1 and spec.subsets.sampler == "optuna":
        fail(
            "seeds: the optuna sampler picks each configuration once; use seeds: 1, or a "
            "stratified, random or grid sampler to repeat configurations over seeds"
        )
    budget = spec.budget
    for name in ("intermediate_steps", "target_steps", "report_every_steps", "probe_steps"):
        if getattr(budget, name) < (0 if name == "probe_steps" else 1):
            fail(f"budget.{name}: must be positive")
    if budget.reduction_factor < 2:
        fail("budget.reduction_factor: must be at least 2")
    if budget.survivors_per_size < 1:
        fail(
            f"budget.survivors_per_size: {budget.survivors_per_size}; at least 1 trial of each "
            "subset size must pass each rung, or the scaling curve has sizes with no result"
        )
    if spec.grace_period_steps > spec.max_budget_steps:
        fail(
            f"budget.grace_period_steps: {spec.grace_period_steps} is past a trial's whole budget "
            f"({spec.max_budget_steps} steps); lower it"
        )
    if spec.resources.cpu <= 0 or spec.resources.gpu < 0:
        fail("resources: cpu must be > 0 and gpu >= 0")
    if spec.resources.gpu > 1 and not float(spec.resources.gpu).is_integer():
        fail("resources.gpu: above 1 a trial takes whole GPUs (e.g. 2); fractions are for gpu < 1")
    sampler_domain = spec.hyperparameters.get("task_sampler")
    for value in sampler_domain.values if sampler_domain else ():
        if value not in TASK_SAMPLERS:
            fail(
                f"hyperparameters.task_sampler: '{value}'{did_you_mean(value, TASK_SAMPLERS)} "
                f"is not one of {', '.join(TASK_SAMPLERS)}"
            )
    for name, domain in spec.hyperparameters.items():
        numbers = [v for v in domain.values if isinstance(v, int | float)]
        if any(not math.isfinite(v) or v < 0 for v in numbers):
            fail(f"hyperparameters.{name}: values must be finite and >= 0")
    if spec.data.max_seq_length < 8:
        fail("data.max_seq_length: must be at least 8")
    if spec.max_concurrent_trials < 0 or spec.max_failures < 0:
        fail("max_concurrent_trials and max_failures must be >= 0")
    check_tracking_scheme(spec.tracking_uri)


def _check_task(task: Task, registry: dict[str, Task], languages: dict[str, Language]) -> None:
    """A task declared or changed in the spec: its columns fit its kind, its metric applies, its
    languages and training tasks exist."""
    from xlt_search.metrics import METRICS_BY_KIND
    from xlt_search.tasks import get_language, get_task

    where = f"tasks.{task.key}"
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
    if task.metric not in METRICS_BY_KIND[task.kind]:
        raise SpecError(
            f"{where}.metric: '{task.metric}' does not apply to {task.kind} tasks; use one of "
            f"{', '.join(METRICS_BY_KIND[task.kind])}"
        )
    if task.metric == "entity_f1" and not any(name.startswith("B-") for name in task.labels):
        raise SpecError(
            f"{where}.metric: entity_f1 reads entities from BIO tags; declare the task's labels "
            "(e.g. [O, B-PER, I-PER, ...])"
        )
    if task.labels and len(task.labels) != task.num_labels:
        raise SpecError(
            f"{where}: {len(task.labels)} labels named but num_labels is {task.num_labels}"
        )
    if task.kind in ("classification", "tagging") and task.num_labels < 2:
        raise SpecError(f"{where}.num_labels: a {task.kind} task needs at least 2 labels")
    if task.files is not None and task.layout is None:
        raise SpecError(
            f"{where}.files: {task.key} declares no layout of its authors' files; read your files "
            "through sources instead (path: json, data_files: ...)"
        )
    if isinstance(task.files, collections.abc.Mapping):
        for split in task.files:
            if split not in ("train", "validation", "test"):
                raise SpecError(
                    f"{where}.files: unknown split '{split}'{did_you_mean(split, SPLITS)}; "
                    f"files maps {', '.join(SPLITS)} to paths"
                )
    for code in task.languages:
        get_language(code, languages)
    for key in task.train_tasks:
        if get_task(key, registry).kind != task.kind:
            raise SpecError(f"{where}.train_tasks: {key} is not a {task.kind} task")
