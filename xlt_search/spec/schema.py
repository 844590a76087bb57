"""The search spec: a YAML file validated into frozen dataclasses.

Every mistake is one line that names the key and the fix; a typo'd key suggests the right one.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from xlt_search.errors import SpecError, UserError, did_you_mean
from xlt_search.tasks import LANGUAGES, PHANG2020_POOL, POOLS, REGISTRY, Language, Task
from xlt_search.tasks.base import KIND_FIELDS, OPTIONAL_FIELDS

SAMPLERS = ("stratified", "random", "grid", "optuna")
SCHEDULERS = ("asha", "fifo")
DOMAIN_KINDS = ("choice", "uniform", "loguniform", "randint")
TASK_SAMPLERS = ("proportional", "temperature", "uniform")
SPLITS = ("train", "validation", "test")

# The trial's tunable fields (pipeline.TrialConfig), with the type a value must have.
HYPERPARAMETERS: dict[str, type] = {
    "learning_rate": float,
    "target_learning_rate": float,
    "per_device_batch_size": int,
    "weight_decay": float,
    "warmup_ratio": float,
    "task_sampler": str,
    "sampler_cap": int,
    "sampler_temperature": float,
}


@dataclass(frozen=True)
class Domain:
    """A hyperparameter's values: a constant, or a choice / uniform / loguniform / randint domain."""

    kind: Literal["constant", "choice", "uniform", "loguniform", "randint"]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class TargetSpec:
    """A target task and the languages it is evaluated on (empty: all the task has)."""

    task: str
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubsetSpec:
    """How trials pick their subsets of intermediate tasks."""

    sampler: Literal["stratified", "random", "grid", "optuna"] = "stratified"
    sizes: tuple[int, ...] = ()  # empty: every size from 1 to the pool's size
    per_size: int = 2  # stratified: subsets per size
    num_samples: int = 18  # random and optuna: trials in all
    # The reference trial with no intermediate task (plain target fine-tuning), the scaling
    # curve's baseline; None: run it, except with optuna (whose searcher picks every trial).
    baseline: bool | None = None


@dataclass(frozen=True)
class BudgetSpec:
    """Training steps per phase and the early-stopping schedule, on the budget_steps axis."""

    intermediate_steps: int
    target_steps: int
    report_every_steps: int
    probe_steps: int
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period_steps: int = 0  # 0: report_every_steps
    reduction_factor: int = 3
    survivors_per_size: int = 2  # ASHA: the first trials of each size at a rung always continue


@dataclass(frozen=True)
class ResourcesSpec:
    """What one trial asks Ray for; a fractional gpu packs several trials on one GPU."""

    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class DataSpec:
    """Tokenization and caching of every task split the search needs, and where hub data is.

    `max_train_examples` caps every training split (subsampled deterministically from the seed);
    `max_train_examples_per_task` sets a task's own cap. `mirror` is a folder of hub datasets
    copied as ``<mirror>/<hub id>`` (for air-gapped machines).
    """

    max_seq_length: int = 128
    max_train_examples: int | None = None
    max_train_examples_per_task: dict[str, int] = field(default_factory=dict)
    cache_dir: str | None = None  # None: $XLT_SEARCH_CACHE or ~/.cache/xlt-search
    mirror: str | None = None
    # Search even when a split is mostly tokens the model's tokenizer does not know (`coverage`).
    allow_unknown_tokens: bool = False


@dataclass(frozen=True)
class MLflowSpec:
    """Where results go; tracking_uri None: $MLFLOW_TRACKING_URI or MLflow's default."""

    experiment: str | None = None  # None: the spec's name
    tracking_uri: str | None = None


@dataclass(frozen=True)
class SearchSpec:
    """A whole search: what to try, how long to train, where to run and where to log."""

    name: str
    model: str
    targets: tuple[TargetSpec, ...]
    budget: BudgetSpec
    pool: tuple[str, ...] = PHANG2020_POOL
    subsets: SubsetSpec = field(default_factory=SubsetSpec)
    hyperparameters: dict[str, Domain] = field(default_factory=dict)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    # bf16 autocast of the encoder; auto: on a CUDA GPU that supports bf16, fp32 elsewhere
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    max_concurrent_trials: int = 0  # 0: as many as the resources allow
    max_failures: int = 2  # retries of a trial from its checkpoint when its worker dies
    seed: int = 0
    seeds: int = 1  # training seeds per configuration: seed, seed + 1, ...
    data: DataSpec = field(default_factory=DataSpec)
    mlflow: MLflowSpec = field(default_factory=MLflowSpec)
    storage_path: str = "xlt_runs"
    tasks: dict[str, Task] = field(default_factory=dict)  # the spec's own tasks and changes
    languages: dict[str, Language] = field(default_factory=dict)  # the spec's own languages

    @property
    def registry(self) -> dict[str, Task]:
        """The tasks this search knows: the registry's, with the spec's added or changed."""
        return {**REGISTRY, **self.tasks}

    @property
    def known_languages(self) -> dict[str, Language]:
        return {**LANGUAGES, **self.languages}

    @property
    def fine_tuned_targets(self) -> tuple[TargetSpec, ...]:
        """The targets that are fine-tuned (all but retrieval ones)."""
        registry = self.registry
        return tuple(t for t in self.targets if registry[t.task].kind != "retrieval")

    @property
    def sizes(self) -> tuple[int, ...]:
        """The subset sizes the search covers."""
        return self.subsets.sizes or tuple(range(1, len(self.pool) + 1))

    @property
    def runs_baseline(self) -> bool:
        """Whether the search runs the no-intermediate reference trial."""
        if self.subsets.baseline is None:
            return self.subsets.sampler != "optuna"
        return self.subsets.baseline

    @property
    def trial_seeds(self) -> tuple[int, ...]:
        """The training seeds every configuration runs with."""
        return tuple(range(self.seed, self.seed + self.seeds))

    @property
    def max_budget_steps(self) -> int:
        """A trial's whole budget: intermediate steps plus every target's fine-tuning steps."""
        return self.budget.intermediate_steps + self.budget.target_steps * len(
            self.fine_tuned_targets
        )

    @property
    def grace_period_steps(self) -> int:
        return self.budget.grace_period_steps or self.budget.report_every_steps

    @property
    def experiment(self) -> str:
        return self.mlflow.experiment or self.name

    @property
    def tracking_uri(self) -> str | None:
        return self.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")


def load_spec(path: str | Path) -> SearchSpec:
    """Read and validate a spec file; any problem raises a one-line SpecError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such spec file; the shipped ones are in search_spaces/")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise SpecError(f"{path}: malformed YAML{where}: {problem}") from None
    try:
        return parse_spec(raw)
    except SpecError as error:
        raise SpecError(f"{path}: {error}") from None


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
        raw["targets"] = [{"task": t} if isinstance(t, str) else t for t in raw["targets"] or []]
    if isinstance(raw.get("pool"), str) and raw["pool"] in POOLS:
        raw["pool"] = list(POOLS[raw["pool"]])
    spec = _build(SearchSpec, raw, "")
    spec = dataclasses.replace(
        spec, hyperparameters=hyperparameters, tasks=tasks, languages=languages
    )
    _check(spec)
    return spec


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


def _parse_languages(raw: Any) -> dict[str, Language]:
    if not isinstance(raw, dict):
        raise SpecError("languages: expected a mapping of code -> {name, family, script}")
    return {
        code: _build(Language, {"code": code, **(fields or {})}, f"languages.{code}.")
        for code, fields in raw.items()
    }


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
    if domain_kind != "choice":
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


def _check(spec: SearchSpec) -> None:
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
