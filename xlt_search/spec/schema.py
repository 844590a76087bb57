"""The search spec as a user reads it: frozen dataclasses, one per section of the YAML file.

`xlt_search.spec.parse` builds them from YAML; `xlt_search.spec.checks` holds the rules across keys.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from xlt_search.names import DEFAULT_ROBUST_COPIES, RS_DA, split_languages
from xlt_search.tasks import LANGUAGES, PHANG2020_POOL, REGISTRY, Language, Task

# The trial's tunable fields (trial.TrialConfig), with the type a value must have.
HYPERPARAMETERS: dict[str, type] = {
    "learning_rate": float,
    "target_learning_rate": float,
    "per_device_batch_size": int,
    "weight_decay": float,
    "warmup_ratio": float,
    "task_sampler": str,
    "sampler_cap": int,
    "sampler_temperature": float,
    "robust_training": str,
    "robust_epsilon": float,
    "robust_phases": str,
    "intermediate_languages": str,
    "robust_copies": int,
}

# The domains a spec may write for a hyperparameter (a plain value is a constant). `grid` runs
# every configuration once with each of its values (a grid axis, like the seeds); the others draw
# one value per trial.
DOMAIN_KINDS: tuple[str, ...] = ("choice", "grid", "uniform", "loguniform", "randint")
# The subset samplers whose searcher picks each trial live, from the reports so far: each runs a
# configuration once, and neither the baseline nor a grid.
LIVE_SAMPLERS: tuple[str, ...] = ("optuna", "guided")


@dataclass(frozen=True)
class Domain:
    """A hyperparameter's values: a constant, or a choice, grid, uniform, loguniform or randint
    domain."""

    kind: Literal["constant", "choice", "grid", "uniform", "loguniform", "randint"]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class TargetSpec:
    """A target task, the languages it is evaluated on (empty: all the task has), and the
    languages whose every pair l1-l2 makes a mixed-language evaluation set (`data.mixing`: the
    instance's first part in l1, its second in l2; empty: none)."""

    task: str
    languages: tuple[str, ...] = ()
    mixed_languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubsetSpec:
    """How trials pick their subsets of intermediate tasks."""

    # optuna: TPE over one boolean per task; guided: a surrogate of the score over the subset,
    # learning from every report so far (xlt_search/guided.py). Both pick each trial live.
    sampler: Literal["stratified", "random", "grid", "optuna", "guided"] = "stratified"
    sizes: tuple[int, ...] = ()  # empty: every size from 1 to the pool's size
    per_size: int = 2  # stratified: subsets per size
    num_samples: int = 18  # random, optuna and guided: trials in all
    # The reference trial with no intermediate task (plain target fine-tuning), the scaling
    # curve's baseline; None: run it, except with optuna or guided (which pick every trial).
    baseline: bool | None = None
    # Control trials (names.CONTROLS), each run once per training seed beside the baseline:
    # `word_shuffle` is the baseline fine-tuned on word-shuffled target training data.
    controls: tuple[Literal["word_shuffle"], ...] = ()

    @property
    def picks_live(self) -> bool:
        """Whether a searcher picks each trial as the search goes (no plan of subsets ahead)."""
        return self.sampler in LIVE_SAMPLERS


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
    # rs_da's counter-fitted neighbours: a JSON object, word -> list of neighbour words.
    synonyms: str | None = None


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
        """The languages this search knows: the registry's, with the spec's own added."""
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
            return not self.subsets.picks_live
        return self.subsets.baseline

    def values_of(self, name: str, default: Any) -> tuple[Any, ...]:
        """The values hyperparameter `name` can take: its listed values (a randint's integers),
        `(default,)` when the spec does not set it."""
        domain = self.hyperparameters.get(name)
        if domain is None:
            return (default,)
        if domain.kind == "randint":
            return tuple(range(domain.values[0], domain.values[1]))
        return domain.values

    @property
    def augmented_copies(self) -> tuple[int, ...]:
        """The `robust_copies` an rs_da trial can take, each a variant of the English training
        data prepared before the search; () when no trial trains with rs_da."""
        if RS_DA not in self.values_of("robust_training", None):
            return ()
        return tuple(sorted(set(self.values_of("robust_copies", DEFAULT_ROBUST_COPIES))))

    @property
    def augments_intermediate(self) -> bool:
        """Whether an rs_da trial can augment its intermediate tasks (`robust_phases: all`)."""
        return bool(self.augmented_copies) and "all" in self.values_of("robust_phases", "target")

    @property
    def intermediate_languages(self) -> tuple[str, ...]:
        """Every language some trial's intermediate phase trains on (English by default)."""
        domain = self.hyperparameters.get("intermediate_languages")
        values = domain.values if domain is not None else ("en",)
        return tuple(dict.fromkeys(code for v in values for code in split_languages(v)))

    @property
    def grid_points(self) -> int:
        """The runs of each configuration and seed: the product of the `grid` domains' sizes."""
        return math.prod(len(d.values) for d in self.hyperparameters.values() if d.kind == "grid")

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
        """The budget_steps of ASHA's first rung (`report_every_steps` when the budget says 0)."""
        return self.budget.grace_period_steps or self.budget.report_every_steps

    @property
    def experiment(self) -> str:
        """The MLflow experiment the search logs to."""
        return self.mlflow.experiment or self.name

    @property
    def tracking_uri(self) -> str | None:
        """The spec's tracking URI, else $MLFLOW_TRACKING_URI; None: MLflow's default."""
        return self.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
