"""The search's Tuner: the param space (or a live searcher), the scheduler, the run config.

A plan with a list of subsets is a grid over them (and over the training seeds), each trial's
`n_tasks` and `use.<task>` flags following from its subset; optuna picks a subset per trial with
TPE over one boolean per pool task, guided with its surrogate (search/guided.py). Every trial is compared on `budget_steps` by ASHA within its
subset size (`SizeStratifiedASHA`), or none is stopped (FIFO).

This module imports Ray at the top: import it only where a search runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from xlt_search import subsets
from xlt_search.names import CONTROL_PARAM
from xlt_search.search.callbacks import MLflowCallback, ProgressCallback
from xlt_search.search.guided import GuidedSearch
from xlt_search.search.paths import experiment_path
from xlt_search.search.scheduler import SizeStratifiedASHA
from xlt_search.search.trainable import trainable

if TYPE_CHECKING:
    from xlt_search.data import PreparedData
    from xlt_search.search.plan import SearchPlan
    from xlt_search.spec import Domain, SearchSpec
    from xlt_search.tracking import SearchLogger


def build_tuner(
    plan: SearchPlan,
    model: str,
    data: PreparedData,
    logger: SearchLogger,
    run_name: str,
    verbose: bool = False,
) -> tune.Tuner:
    """The Tuner of a new search: the plan's trials, logged to `logger`'s parent run. `verbose`:
    Tune prints its own status tables too."""
    spec = plan.spec
    max_concurrent = spec.max_concurrent_trials or None  # Tune's limit, for a live searcher
    param_space: dict[str, Any] = {}
    num_samples = spec.subsets.num_samples
    if spec.subsets.sampler == "guided":
        search_alg: Any = GuidedSearch(
            spec.pool,
            spec.sizes,
            spec.seed,
            spec.max_budget_steps,
            {name: tune_domain(d) for name, d in spec.hyperparameters.items()},
        )
    elif plan.subsets is None:
        from ray.tune.search.optuna import OptunaSearch  # imports optuna: only where it is used

        search_alg = OptunaSearch(
            space=_OptunaSpace(spec), metric="score", mode="max", seed=spec.seed
        )
    else:
        param_space = _grid_space(spec, plan.subsets)
        # Seeded, so a sampled hyperparameter takes the same values each time the spec runs (Tune's
        # default generator draws from the global numpy state). It keeps to the concurrency itself.
        # Each control is a preset of the baseline's (empty) subset with its control set, which
        # Tune runs first, once per seed, as one more sample beside the grid.
        search_alg = BasicVariantGenerator(
            points_to_evaluate=[{"tasks": "", CONTROL_PARAM: c} for c in plan.controls],
            max_concurrent=spec.max_concurrent_trials,
            random_state=spec.seed,
        )
        num_samples, max_concurrent = 1 + len(plan.controls), None
    return tune.Tuner(
        trainable(spec, model, data),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            scheduler=_scheduler(spec),
            search_alg=search_alg,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            # A trial starts in the worker of one that ended (same resources): a new worker pays
            # about 3 s of imports (torch, transformers, datasets) before its trial can start.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=experiment_path(spec, run_name).rsplit("/", 1)[0],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[
                MLflowCallback(logger.parent_run_id, spec.pool, spec.seed),
                ProgressCallback(plan),
            ],
            verbose=1 if verbose else 0,  # the progress callback prints the search's status
        ),
    )


def restore_tuner(path: str, spec: SearchSpec, model: str, data: PreparedData) -> tune.Tuner:
    """The Tuner of an interrupted search, from its experiment folder `path`: finished trials stay
    as they are, unfinished ones continue from their checkpoints, the searcher's state comes back.
    """
    # A trial that failed on its own (diverged, out of memory) stays failed.
    return tune.Tuner.restore(
        path, trainable=trainable(spec, model, data), resume_unfinished=True, resume_errored=False
    )


def tune_domain(domain: Domain) -> Any:
    """A spec's hyperparameter domain as Tune's: its value when constant, else Tune's sampler."""
    if domain.kind == "constant":
        return domain.values[0]
    if domain.kind == "choice":
        return tune.choice(list(domain.values))
    if domain.kind == "grid":
        return tune.grid_search(list(domain.values))
    return getattr(tune, domain.kind)(*domain.values)


def _grid_space(spec: SearchSpec, chosen: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """A grid over the subsets (and the training seeds), plus the sampled hyperparameters."""
    keys = [subsets.subset_key(s) for s in chosen]
    random.Random(spec.seed).shuffle(keys)  # sizes interleave, so early rungs see every size
    seeds = list(spec.trial_seeds)
    following = [name for name in subsets.subset_params((), spec.pool) if name != "tasks"]
    return {
        "tasks": tune.grid_search(keys),
        "seed": tune.grid_search(seeds) if len(seeds) > 1 else seeds[0],
        **{name: _from_subset(name, spec.pool) for name in following},
        **({CONTROL_PARAM: ""} if spec.subsets.controls else {}),  # a control trial's preset
        **{name: tune_domain(d) for name, d in spec.hyperparameters.items()},
    }


def _from_subset(name: str, pool: tuple[str, ...]) -> Any:
    """The param `name` of the trial's subset (`n_tasks`, a `use.<task>` flag)."""
    # Tune calls this with the trial's config, its grid value `tasks` already chosen.
    return tune.sample_from(
        lambda c: subsets.subset_params(subsets.parse_subset_key(c["tasks"]), pool)[name]
    )


def _scheduler(spec: SearchSpec) -> TrialScheduler:
    if spec.budget.scheduler == "asha":
        return SizeStratifiedASHA(
            time_attr="budget_steps",
            max_t=spec.max_budget_steps,
            grace_period=spec.grace_period_steps,
            reduction_factor=spec.budget.reduction_factor,
            survivors_per_size=spec.budget.survivors_per_size,
        )
    return FIFOScheduler()


@dataclass(frozen=True)
class _OptunaSpace:
    """Optuna's define-by-run space: TPE over one boolean per pool task and the hyperparameters; a
    pick of a size the spec does not allow is repaired. (A class, not a closure: Tune pickles the
    searcher with its state.)"""

    spec: SearchSpec

    def __call__(self, trial: Any) -> dict[str, Any]:
        pool, spec = self.spec.pool, self.spec
        flags = {
            subsets.flag_name(t): trial.suggest_categorical(subsets.flag_name(t), [True, False])
            for t in pool
        }
        for name, domain in spec.hyperparameters.items():
            if domain.kind == "choice":
                trial.suggest_categorical(name, list(domain.values))
            elif domain.kind in ("uniform", "loguniform"):
                trial.suggest_float(name, *domain.values, log=domain.kind == "loguniform")
            elif domain.kind == "randint":
                trial.suggest_int(name, domain.values[0], domain.values[1] - 1)
        rng = random.Random(trial.number + spec.seed)
        chosen = subsets.repair(flags, pool, spec.sizes, rng)
        constants = {
            name: d.values[0] for name, d in spec.hyperparameters.items() if d.kind == "constant"
        }
        # Optuna's own picks (the flags before repair) stay in the trial's config beside these.
        return {
            "tasks": subsets.subset_key(chosen),
            "n_tasks": len(chosen),
            "seed": spec.seed,
            **constants,
        }
