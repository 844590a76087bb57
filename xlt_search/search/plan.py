"""The plan of a search, and the one translation of its spec into a trial's `TrialConfig`.

The plan is what `xlt-search run --dry-run` and `xlt-search plan` print: the subsets the search
will train, its trials, rungs and budget. No Ray here, and neither torch nor the spec's parser at
import: the CLI reads the plan without paying for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xlt_search import subsets
from xlt_search.search.paths import experiment_path
from xlt_search.tracking.uri import masked

if TYPE_CHECKING:
    from xlt_search.spec import Domain, SearchSpec
    from xlt_search.trial import TargetConfig, TrialConfig


@dataclass(frozen=True)
class SearchPlan:
    """What a search will run: the subsets (None for optuna or guided, which pick as they go) and
    the budget."""

    spec: SearchSpec
    subsets: tuple[tuple[str, ...], ...] | None  # the baseline, if run, is the empty subset

    @property
    def controls(self) -> tuple[str, ...]:
        """The control trials' controls: each an empty subset trained as the control says."""
        return self.spec.subsets.controls

    @property
    def num_trials(self) -> int:
        """Trials in all: every subset (or live pick) and every control once per training
        seed and grid point."""
        configurations = (
            len(self.subsets) if self.subsets is not None else self.spec.subsets.num_samples
        )
        return (configurations + len(self.controls)) * self.spec.seeds * self.spec.grid_points

    @property
    def budget_steps(self) -> int:
        """Every trial's whole budget together: what the search takes if no trial is cut."""
        if self.subsets is None:  # a live sampler never picks the empty subset, runs no control
            return self.num_trials * self.spec.max_budget_steps
        subsets = (*self.subsets, *[()] * len(self.controls))
        each = sum(trial_budget_steps(self.spec, len(s)) for s in subsets)
        return each * self.spec.seeds * self.spec.grid_points

    @property
    def per_size(self) -> dict[int, int]:
        """Trials per subset size (empty for a live sampler: sizes are chosen as it goes)."""
        return dict(sorted(Counter(len(s) for s in self.subsets or ()).items()))

    @property
    def rungs(self) -> list[int]:
        """The budget_steps at which ASHA compares trials."""
        if self.spec.budget.scheduler != "asha":
            return []
        rungs, milestone = [], self.spec.grace_period_steps
        while milestone < self.spec.max_budget_steps:
            rungs.append(milestone)
            milestone *= self.spec.budget.reduction_factor
        return rungs


def trial_budget_steps(spec: SearchSpec, n_tasks: int) -> int:
    """A trial's whole budget_steps; the baseline (no task) has no intermediate phase."""
    return spec.max_budget_steps - (0 if n_tasks else spec.budget.intermediate_steps)


def make_plan(spec: SearchSpec) -> SearchPlan:
    """Choose the subsets the search will train, with the spec's sampler."""
    sampler = spec.subsets.sampler
    if sampler == "stratified":
        chosen = subsets.stratified(spec.pool, spec.sizes, spec.subsets.per_size, spec.seed)
    elif sampler == "random":
        chosen = subsets.random_subsets(spec.pool, spec.sizes, spec.subsets.num_samples, spec.seed)
    elif sampler == "grid":
        chosen = subsets.grid(spec.pool, spec.sizes)
    else:
        return SearchPlan(spec, None)
    baseline = [()] if spec.runs_baseline else []
    return SearchPlan(spec, tuple(baseline + list(chosen)))


def describe_plan(plan: SearchPlan) -> str:
    """The plan as the lines `xlt-search run --dry-run` prints."""
    spec, budget = plan.spec, plan.spec.budget
    lines = [
        f"search      {spec.name}  (model {spec.model})",
        f"pool        {len(spec.pool)} tasks: {', '.join(spec.pool)}",
        "targets     "
        + "; ".join(
            f"{t.task} [{', '.join(t.languages) or 'all languages'}]"
            + (f" mixed [{', '.join(t.mixed_languages)}]" if t.mixed_languages else "")
            for t in spec.targets
        ),
        f"subsets     {spec.subsets.sampler}: {plan.num_trials} trials, sizes "
        + ", ".join(map(str, spec.sizes))
        + (" and the no-intermediate baseline" if spec.runs_baseline else "")
        + "".join(f", its {control} control" for control in plan.controls)
        + (f"; seeds {', '.join(map(str, spec.trial_seeds))} each" if spec.seeds > 1 else "")
        + (f"; each at {spec.grid_points} grid points" if spec.grid_points > 1 else ""),
    ]
    if plan.subsets is not None:
        lines.append("per size    " + "  ".join(f"k={k}: {n}" for k, n in plan.per_size.items()))
    lines += [
        f"budget      {budget.intermediate_steps} intermediate + {budget.target_steps} x "
        f"{len(spec.fine_tuned_targets)} target steps = {spec.max_budget_steps} budget_steps "
        "per trial "
        f"(report every {budget.report_every_steps}, probe {budget.probe_steps} steps)",
        f"scheduler   {budget.scheduler}"
        + (
            f": rungs at budget_steps {', '.join(map(str, plan.rungs))}, "
            f"reduction factor {budget.reduction_factor}"
            if plan.rungs
            else ""
        ),
        f"worst case  {plan.budget_steps} budget_steps in all",
        f"data        max_seq_length {spec.data.max_seq_length}, train cap "
        f"{spec.data.max_train_examples or 'none'}"
        + "".join(f", {k}: {v}" for k, v in spec.data.max_train_examples_per_task.items())
        + (f"; hub datasets from the mirror {spec.data.mirror}" if spec.data.mirror else ""),
        f"resources   {spec.resources.cpu:g} cpu, {spec.resources.gpu:g} gpu per trial; "
        + (
            f"at most {spec.max_concurrent_trials} at once"
            if spec.max_concurrent_trials
            else "as many at once as the resources allow"
        ),
        "hyperparams "
        + (
            "; ".join(f"{n}={_describe_domain(d)}" for n, d in spec.hyperparameters.items())
            or "pipeline defaults"
        ),
        f"storage     {experiment_path(spec, '<run name>').rsplit('/', 1)[0]}",
        f"mlflow      experiment '{spec.experiment}' at "
        + masked(spec.tracking_uri or "sqlite:///mlflow.db"),
    ]
    return "\n".join(lines)


def _describe_domain(domain: Domain) -> str:
    if domain.kind == "constant":
        return str(domain.values[0])
    return f"{domain.kind}{list(domain.values)}"


def target_configs(spec: SearchSpec) -> tuple[TargetConfig, ...]:
    """The spec's targets as a trial reads them: each with its languages (the registry's when the
    spec lists none) and mixed languages, fine-tuned unless it is a retrieval task."""
    from xlt_search.trial import TargetConfig

    registry, fine_tuned = spec.registry, spec.fine_tuned_targets
    return tuple(
        TargetConfig(
            t.task,
            t.languages or registry[t.task].languages,
            fine_tuned=t in fine_tuned,
            mixed_languages=t.mixed_languages,
        )
        for t in spec.targets
    )


def trial_config(
    spec: SearchSpec, model: str, config: Mapping[str, Any], device: str = "cpu"
) -> TrialConfig:
    """The `TrialConfig` of one trial of the search: the spec's targets, budget, threads and
    precision, the resolved `model`, and from the trial's Tune `config` its subset (`tasks`), its
    `seed`, its control if it is one, and the hyperparameters it sets (the pipeline's defaults
    for the others)."""
    from xlt_search.names import CONTROL_PARAM
    from xlt_search.spec import HYPERPARAMETERS
    from xlt_search.trial import TrialConfig

    return TrialConfig(
        model=model,
        tasks=subsets.parse_subset_key(config["tasks"]),
        targets=target_configs(spec),
        intermediate_steps=spec.budget.intermediate_steps,
        target_steps=spec.budget.target_steps,
        report_every_steps=spec.budget.report_every_steps,
        probe_steps=spec.budget.probe_steps,
        seed=config["seed"],
        num_threads=max(1, int(spec.resources.cpu)),
        device=device,
        precision=spec.precision,
        control=config.get(CONTROL_PARAM) or "",
        **{name: config[name] for name in HYPERPARAMETERS if name in config},
    )
