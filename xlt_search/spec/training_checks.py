"""The spec's rules on how its trials train: the budget, the resources a trial asks for, the
hyperparameters' values. Part of `spec.checks.check_spec`, which runs them in its order."""

from __future__ import annotations

import math
from pathlib import Path

from xlt_search.errors import SpecError, did_you_mean
from xlt_search.names import (
    ROBUST_PHASES,
    ROBUST_TRAINING,
    RS_DA,
    SHUFFLED_KINDS,
    TASK_SAMPLERS,
    split_languages,
)
from xlt_search.spec.schema import SearchSpec

# Past this many optimizer steps a phase is a slip, not a plan (the shipped specs train 20,000).
MAX_PHASE_STEPS = 10**9
# The hyperparameters that cannot run at 0, with a value that can.
_POSITIVE = {
    "learning_rate": "2.0e-5",
    "target_learning_rate": "2.0e-5",
    "sampler_cap": "100000",
    "sampler_temperature": "2.0",
    "robust_epsilon": "0.1",
}
# The hyperparameters whose values are names, and the names they may take.
_NAMED = {
    "task_sampler": TASK_SAMPLERS,
    "robust_training": ROBUST_TRAINING,
    "robust_phases": ROBUST_PHASES,
}


def check_budget(spec: SearchSpec) -> None:
    """The budget: at least one step in each phase, probes of zero steps or more, and rungs ASHA
    can place within a trial's budget."""
    budget = spec.budget
    for name in ("intermediate_steps", "target_steps", "report_every_steps", "probe_steps"):
        if getattr(budget, name) < (0 if name == "probe_steps" else 1):
            raise SpecError(f"budget.{name}: must be positive")
    for name in ("intermediate_steps", "target_steps"):
        if getattr(budget, name) > MAX_PHASE_STEPS:
            raise SpecError(
                f"budget.{name}: {getattr(budget, name)} is past the cap of {MAX_PHASE_STEPS:,} "
                "optimizer steps (the shipped specs train 20,000 a phase); lower it"
            )
    if budget.probe_steps > budget.target_steps:
        raise SpecError(
            f"budget.probe_steps: {budget.probe_steps} is more than a target's whole fine-tune "
            f"(target_steps {budget.target_steps}); a probe is a short fine-tune: use at most "
            f"{budget.target_steps}"
        )
    every, whole = budget.report_every_steps, spec.max_budget_steps
    if every > whole:
        raise SpecError(
            f"budget.report_every_steps: {every} is past a trial's whole budget ({whole} "
            f"budget_steps), so no trial would report before its end; use at most {whole} "
            "(trials report at its multiples, and at their end)"
        )
    if budget.grace_period_steps < 0:
        raise SpecError(
            f"budget.grace_period_steps: {budget.grace_period_steps}; use 0 (the first report) "
            "or a positive number of budget_steps"
        )
    if spec.grace_period_steps % every:
        grid = [str(every * i) for i in range(1, 4) if every * i <= whole]
        shown = ", ".join(grid) + (", ..." if 4 * every <= whole else "")
        raise SpecError(
            f"budget.grace_period_steps: {spec.grace_period_steps} is off the report grid: "
            f"trials report every {every} budget_steps, so the rung would compare scores "
            f"reported later; use a multiple of report_every_steps ({shown})"
        )
    if budget.reduction_factor < 2:
        raise SpecError("budget.reduction_factor: must be at least 2")
    if budget.survivors_per_size < 1:
        raise SpecError(
            f"budget.survivors_per_size: {budget.survivors_per_size}; at least 1 trial of each "
            "subset size must pass each rung, or the scaling curve has sizes with no result"
        )
    if spec.grace_period_steps > spec.max_budget_steps:
        raise SpecError(
            f"budget.grace_period_steps: {spec.grace_period_steps} is past a trial's whole budget "
            f"({spec.max_budget_steps} steps); lower it"
        )


def check_resources(spec: SearchSpec) -> None:
    """What a trial asks Ray for, how many run at once and how often one is retried."""
    resources = spec.resources
    if resources.cpu <= 0 or resources.gpu < 0:
        raise SpecError("resources: cpu must be > 0 and gpu >= 0")
    if resources.gpu > 1 and not float(resources.gpu).is_integer():
        raise SpecError(
            "resources.gpu: above 1 a trial takes whole GPUs (e.g. 2); fractions are for gpu < 1"
        )
    if spec.max_concurrent_trials < 0 or spec.max_failures < 0:
        raise SpecError("max_concurrent_trials and max_failures must be >= 0")


def check_hyperparameters(spec: SearchSpec) -> None:
    """The hyperparameters' values: known names (task samplers, robust training), finite numbers
    >= 0, a batch of at least one example."""
    for name, names in _NAMED.items():
        domain = spec.hyperparameters.get(name)
        for value in domain.values if domain else ():
            if value not in names:
                raise SpecError(
                    f"hyperparameters.{name}: '{value}'{did_you_mean(value, names)} "
                    f"is not one of {', '.join(names)}"
                )
    for name, example in _POSITIVE.items():
        domain = spec.hyperparameters.get(name)
        lowest = min(domain.values) if domain else None
        if lowest is not None and lowest <= 0:
            raise SpecError(
                f"hyperparameters.{name}: {lowest} cannot run; it must be > 0 "
                f"(e.g. {name}: {example})"
            )
    for name, domain in spec.hyperparameters.items():
        numbers = [v for v in domain.values if isinstance(v, int | float)]
        bad = [v for v in numbers if not math.isfinite(v) or v < 0]
        if bad:
            raise SpecError(f"hyperparameters.{name}: {bad[0]}: values must be finite and >= 0")
    _check_intermediate_languages(spec)
    batch_domain = spec.hyperparameters.get("per_device_batch_size")
    if batch_domain and min(batch_domain.values) < 1:
        raise SpecError(
            f"hyperparameters.per_device_batch_size: {min(batch_domain.values)} is no batch; it "
            "must be at least 1 (e.g. per_device_batch_size: 16)"
        )


def _check_intermediate_languages(spec: SearchSpec) -> None:
    """Each `intermediate_languages` value names languages every pool task has training data in."""
    domain = spec.hyperparameters.get("intermediate_languages")
    registry = spec.registry
    for value in domain.values if domain else ():
        codes = split_languages(value)
        if not all(codes) or len(set(codes)) != len(codes):
            raise SpecError(
                f"hyperparameters.intermediate_languages: '{value}' is no list of languages; "
                "join distinct language codes with + (e.g. en, en+de+zh, de+zh)"
            )
        for key in spec.pool:
            lacking = [code for code in codes if code not in registry[key].train_languages]
            if lacking:
                raise SpecError(
                    f"hyperparameters.intermediate_languages: '{value}': {key} has no "
                    f"{lacking[0]} training data (it trains in "
                    f"{', '.join(registry[key].train_languages)}); use a pool of tasks with "
                    "translations in it (their train_languages), or leave the language out"
                )


def check_rs_da(spec: SearchSpec) -> None:
    """RS-DA's data, prepared before the search: a synonyms file that exists, copies listed (at
    least 1 each), and training data whose words it can swap (no span task)."""
    copies = spec.hyperparameters.get("robust_copies")
    if copies is not None and copies.kind in ("uniform", "loguniform"):
        raise SpecError(
            f"hyperparameters.robust_copies: a {copies.kind} domain has no list of copies to "
            "prepare; use choice, grid or randint (e.g. robust_copies: {choice: [3, 10]})"
        )
    if copies is not None and min(copies.values) < 1:
        raise SpecError(
            f"hyperparameters.robust_copies: {min(copies.values)} copies train on nothing; use "
            "at least 1 (e.g. robust_copies: 3)"
        )
    if not spec.augmented_copies:
        return
    synonyms = spec.data.synonyms
    if synonyms is None:
        raise SpecError(
            f"hyperparameters.robust_training: {RS_DA} swaps words for synonyms, and "
            "data.synonyms names no file; set data.synonyms: PATH (a JSON object, word -> list "
            "of neighbours, as Robust-XLT's counterfitted_neighbors.json)"
        )
    if not Path(synonyms).expanduser().is_file():
        raise SpecError(
            f"data.synonyms: {synonyms} is not a file; give the path of the neighbours JSON "
            "(Robust-XLT's counterfitted_neighbors.json), relative to where xlt-search runs"
        )
    registry = spec.registry
    trained = [t.task for t in spec.fine_tuned_targets]
    keys = [k for t in trained for k in (registry[t].train_tasks or (t,))]
    if spec.augments_intermediate:
        keys += list(spec.pool)
    for key in dict.fromkeys(keys):
        if registry[key].kind not in SHUFFLED_KINDS:
            where = "a target" if key in trained else "the pool (robust_phases: all)"
            raise SpecError(
                f"hyperparameters.robust_training: {RS_DA} cannot swap words in {key}, a "
                f"{registry[key].kind} task of {where}: its answer offsets would no longer "
                "point at the answer; drop it, or use robust_phases: target or another robust_training"
            )
