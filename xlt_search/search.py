"""The Ray Tune edge: one trial = one call of `pipeline.run_trial`, cut early by ASHA, logged by the driver.

Ray is imported here and nowhere else, lazily, so the pipeline and the CLI's other commands never pay for it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from xlt_search import chance, subsets
from xlt_search.errors import TrialDiverged, UserError
from xlt_search.spec import Domain, SearchSpec

if TYPE_CHECKING:
    from xlt_search.coverage import SplitCoverage
    from xlt_search.data import PreparedData
    from xlt_search.tracking import SearchLogger


@dataclass(frozen=True)
class SearchPlan:
    """What a search will run: the subsets (None for optuna, which picks as it goes) and the budget."""

    spec: SearchSpec
    subsets: tuple[tuple[str, ...], ...] | None  # the baseline, if run, is the empty subset

    @property
    def num_trials(self) -> int:
        """Trials in all: every subset (or optuna pick) once per training seed."""
        configurations = (
            len(self.subsets) if self.subsets is not None else self.spec.subsets.num_samples
        )
        return configurations * self.spec.seeds

    @property
    def per_size(self) -> dict[int, int]:
        """Trials per subset size (empty for optuna: sizes are chosen during the search)."""
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
            f"{t.task} [{', '.join(t.languages) or 'all languages'}]" for t in spec.targets
        ),
        f"subsets     {spec.subsets.sampler}: {plan.num_trials} trials, sizes "
        + ", ".join(map(str, spec.sizes))
        + (" and the no-intermediate baseline" if spec.runs_baseline else "")
        + (f"; seeds {', '.join(map(str, spec.trial_seeds))} each" if spec.seeds > 1 else ""),
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
        f"worst case  {plan.num_trials * spec.max_budget_steps} budget_steps in all",
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
        f"storage     {_experiment_path(spec, '<run name>').rsplit('/', 1)[0]}",
        f"mlflow      experiment '{spec.experiment}' at {spec.tracking_uri or 'sqlite:///mlflow.db'}",
    ]
    return "\n".join(lines)


def _describe_domain(domain: Domain) -> str:
    if domain.kind == "constant":
        return str(domain.values[0])
    return f"{domain.kind}{list(domain.values)}"


def run_search(spec: SearchSpec, spec_text: str) -> Path:
    """Run the whole search: prepare data, train the trials under Tune, log to MLflow, draw the curve.

    Returns the folder with the search's results (the scaling curve's CSV and PNG among them).
    """
    from xlt_search import coverage, tracking

    plan = make_plan(spec)
    model, data, measured = prepare_search(spec)  # the tracking URI is its first check
    levels = chance.chance_levels(data, {t.task: t.languages for t in _target_configs(spec)})
    ray = _start_ray()
    _check_resources(spec, ray.cluster_resources())
    _check_cluster(spec, ray)

    run_name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    results_dir = _results_dir(spec, run_name)
    logger = tracking.SearchLogger(spec.tracking_uri, journal_dir=results_dir)
    logger.start(
        spec.experiment,
        run_name,
        spec_text,
        tags={
            "xlt.sampler": spec.subsets.sampler,
            tracking.EXPERIMENT_PATH_TAG: _experiment_path(spec, run_name),
            chance.TAG: chance.to_tag(levels),
            coverage.TAG: coverage.summary(measured),
        },
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / coverage.ARTIFACT).write_text(coverage.to_json(measured, spec.known_languages))
    logger.log_artifact(results_dir / coverage.ARTIFACT)
    _LOGGERS[logger.parent_run_id] = logger

    def build() -> Any:
        return _build_tuner(spec, plan, _trainable(spec, model, data), logger, run_name)

    return _fit(spec, build, logger, run_name)


def resume_search(experiment: str, tracking_uri: str | None, run_id: str | None) -> Path:
    """Continue an interrupted search: finished trials stay as they are, unfinished ones continue
    from their checkpoints, the searcher's state comes back, and MLflow's runs are reused."""
    from ray import tune

    from xlt_search import tracking
    from xlt_search.spec import parse_spec

    tracking.check_tracking_uri(tracking_uri)
    found = tracking.find_search(experiment, tracking_uri, run_id)
    spec = parse_spec(yaml.safe_load(found.spec_text))
    if spec.tracking_uri is None or tracking_uri:
        spec = dataclasses.replace(
            spec, mlflow=dataclasses.replace(spec.mlflow, tracking_uri=found.tracking_uri)
        )
    path = found.experiment_path
    _check_experiment(path)
    model, data, _ = prepare_search(spec)
    ray = _start_ray()
    _check_resources(spec, ray.cluster_resources())
    _check_cluster(spec, ray)

    logger = tracking.SearchLogger(
        found.tracking_uri, journal_dir=_results_dir(spec, Path(path).name)
    )
    logger.resume(found.run_id)
    _LOGGERS[found.run_id] = logger

    def restore() -> Any:
        # A trial may report again a step it had reported before the interruption (Tune resumes
        # it from the checkpoint its experiment state last recorded): MLflow keeps each step once.
        logged = tracking.load_trials(spec.experiment, found.tracking_uri, found.run_id)
        _LOGGED_UNTIL[found.run_id] = {
            row["trial_id"]: int(row["budget_steps"])
            for _, row in logged.iterrows()
            if row["budget_steps"] == row["budget_steps"]  # not NaN: the trial had reported
        }
        print(f"resuming {path} (MLflow parent run {found.run_id})")
        # A trial that failed on its own (diverged, out of memory) stays failed.
        return tune.Tuner.restore(
            path,
            trainable=_trainable(spec, model, data),
            resume_unfinished=True,
            resume_errored=False,
        )

    return _fit(spec, restore, logger, Path(path).name)


def prepare_search(spec: SearchSpec) -> tuple[str, PreparedData, dict[str, SplitCoverage]]:
    """Every check a search makes before Ray starts, then its data: the tracking URI, the storage
    path, the model, each split loaded, checked and tokenized (`xlt-search prepare` stops here).

    Prints the tokenizer's coverage of every split, and a warning line for splits with many
    unknown tokens; a split that is mostly unknown tokens stops the search unless the spec sets
    `data.allow_unknown_tokens`. Returns the model, the prepared data and the coverage.
    """
    import sys

    from xlt_search import coverage, preflight, tracking

    tracking.check_tracking_uri(spec.tracking_uri)
    _check_storage(spec)
    preflight.check_model(spec.model, load=True)
    model, data = _prepare(spec)
    measured = coverage.load(data)
    print(coverage.table(measured, spec.known_languages, spec.data.max_seq_length))
    for line in coverage.check(measured, spec.model, spec.data.allow_unknown_tokens):
        print(f"xlt-search: warning: {line}", file=sys.stderr, flush=True)
    return model, data, measured


def _prepare(spec: SearchSpec) -> tuple[str, PreparedData]:
    """The model's local folder (or hub id), and every split the search reads, tokenized once."""
    from xlt_search.data import prepare_data
    from xlt_search.synthetic import resolve_model
    from xlt_search.trial import required_splits

    model = resolve_model(spec.model)
    print(f"preparing data for {len(spec.pool)} intermediate and {len(spec.targets)} target tasks")
    started = time.perf_counter()
    data = prepare_data(
        required_splits(spec.pool, _target_configs(spec), spec.registry),
        tokenizer=model,
        max_seq_length=spec.data.max_seq_length,
        max_train_examples=spec.data.max_train_examples,
        max_train_examples_per_task=spec.data.max_train_examples_per_task,
        cache_dir=_cache_dir(spec),
        seed=spec.seed,
        registry=spec.registry,
        languages=spec.known_languages,
        mirror=spec.data.mirror,
        progress=lambda line: print(f"  {line}", flush=True),
    )
    print(f"data ready in {time.perf_counter() - started:.1f} s: {data.root}")
    return model, data


def _fit(
    spec: SearchSpec, make_tuner: Callable[[], Any], logger: SearchLogger, run_name: str
) -> Path:
    """Make and run (or continue) the Tuner, then write the report and close the parent run.

    SIGINT or SIGTERM stops the trials, keeping their checkpoints and what they logged, and closes
    the parent run as KILLED without a report; KeyboardInterrupt goes on to the caller.
    """
    from xlt_search import interrupts, report

    results_dir = _results_dir(spec, run_name)
    try:
        grid = interrupts.fit(make_tuner())
        if logger.flush():  # MLflow is down: the runs are journaled, the report waits for them
            logger.finish("FINISHED")
            print(
                f"the report needs MLflow: once `xlt-search sync {results_dir}` has delivered "
                f"the journal, write it with `xlt-search report {spec.experiment}`"
            )
            return results_dir
        written = report.write_report(
            spec, logger.tracking_uri, logger.parent_run_id, results_dir / "report"
        )
        print(written.average_table())
        print("\n".join(written.conclusion()))
        report.mark_parent_run(written, logger.tracking_uri, logger.parent_run_id)
        for path in written.files:
            logger.log_artifact(path)
        errored = sum(1 for result in grid if result.error is not None)
        print(
            f"{len(written.trials)} trials ({errored} errored); report in {written.folder}; "
            f"MLflow experiment '{spec.experiment}', parent run {logger.parent_run_id}"
        )
        logger.finish("FINISHED")
    except KeyboardInterrupt:
        logger.finish("KILLED")
        raise interrupts.SearchStopped from None
    except BaseException:
        logger.finish("FAILED")
        raise
    finally:
        _LOGGERS.pop(logger.parent_run_id, None)
        _LOGGED_UNTIL.pop(logger.parent_run_id, None)
    return results_dir


def _is_uri(path: str) -> bool:
    return "://" in path


def _experiment_path(spec: SearchSpec, run_name: str) -> str:
    """Where Tune keeps the search (results, checkpoints, its state): a URI or an absolute path."""
    if _is_uri(spec.storage_path):
        return f"{spec.storage_path.rstrip('/')}/{run_name}"
    return str(Path(spec.storage_path).resolve() / run_name)


def _results_dir(spec: SearchSpec, run_name: str) -> Path:
    """A local folder for the curve's files: the experiment's own, or ./xlt_results/<run> when the
    experiment lives in cloud storage (the files are logged to MLflow either way)."""
    if _is_uri(spec.storage_path):
        return Path("xlt_results").resolve() / run_name
    return Path(spec.storage_path).resolve() / run_name


def _check_storage(spec: SearchSpec) -> None:
    """A local storage_path must be a folder this process can create and write in.

    Nothing is created here: a search stopped by a later check leaves no folder behind. A missing
    folder is checked through its nearest existing parent, where Tune will create it.
    """
    if _is_uri(spec.storage_path):
        return
    folder = Path(spec.storage_path).resolve()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        probe = existing / f".xlt-search-write-{uuid.uuid4().hex}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"storage_path: {folder} cannot hold the search's results ({error.strerror or error}); "
            "point storage_path at a writable folder (on a cluster, one every node mounts) or "
            "at cloud storage (s3://..., gs://...)"
        ) from None


def _check_experiment(path: str) -> None:
    """Refuse, in one line, an experiment folder that is gone or holds a damaged checkpoint."""
    from xlt_search.trial import STATE_FILE, check_checkpoint

    if _is_uri(path):
        return  # Tune reads cloud storage itself and reports what it cannot find
    folder = Path(path)
    if not (folder / "tuner.pkl").is_file():
        raise UserError(
            f"{folder} holds no Tune experiment (no tuner.pkl): the search's storage_path was "
            "moved or deleted; restore it there, or start the search again with xlt-search run"
        )
    for state in sorted(folder.glob(f"*/checkpoint_*/{STATE_FILE}")):
        try:
            check_checkpoint(state.parent)
        except ValueError as error:
            raise UserError(
                f"{error}; delete that checkpoint folder ({state.parent}) so its trial restarts "
                "from its previous checkpoint or from scratch, then resume again"
            ) from None


def _check_cluster(spec: SearchSpec, ray: Any) -> None:
    """On a cluster of several nodes, results must reach every node and MLflow must be a server."""
    from xlt_search import tracking

    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) < 2:
        return
    uri = tracking.resolve_tracking_uri(spec.tracking_uri)
    if not uri.startswith(("http://", "https://")):
        raise UserError(
            f"mlflow.tracking_uri: {uri} is a store on this machine, but the Ray cluster has "
            f"{len(nodes)} nodes; use an http:// MLflow server every search can reach "
            "(`mlflow server --host 0.0.0.0 --port 5000`), e.g. mlflow.tracking_uri: "
            "http://HEAD:5000"
        )
    for key, folder in (
        ("storage_path", spec.storage_path),
        ("data.cache_dir", str(_cache_dir(spec))),
    ):
        if _is_uri(folder):
            continue
        missing = _nodes_missing(ray, nodes, Path(folder).resolve())
        if missing:
            raise UserError(
                f"{key}: {Path(folder).resolve()} is not shared: {len(missing)} of the cluster's "
                f"{len(nodes)} nodes ({', '.join(missing[:3])}) cannot see it; use a folder "
                "mounted on every node (NFS) or cloud storage (s3://..., gs://...)"
            )


def _nodes_missing(ray: Any, nodes: list[dict], folder: Path) -> list[str]:
    """The nodes (by address) that do not see a marker file written in `folder` by this process."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f".xlt-search-shared-{uuid.uuid4().hex}"
    marker.write_text("")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return Path(path).exists()

    try:
        checks = [
            sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(str(marker))
            for node in nodes
        ]
        seen = ray.get(checks, timeout=60)
    finally:
        marker.unlink(missing_ok=True)
    return [node["NodeManagerAddress"] for node, ok in zip(nodes, seen, strict=True) if not ok]


# The loggers of the searches running in this process, by parent run: the MLflow callback, which
# Tune pickles with the experiment (and unpickles on resume), finds its logger here; and, for a
# resumed search, the last step each trial had logged.
_LOGGERS: dict[str, SearchLogger] = {}
_LOGGED_UNTIL: dict[str, dict[str, int]] = {}


# The callback reads those through these functions: Tune pickles the callback's class by value,
# which would copy the dicts themselves; module functions are pickled by reference.
def _logger_for(parent_run_id: str) -> SearchLogger:
    return _LOGGERS[parent_run_id]


def _logged_until(parent_run_id: str, trial_id: str) -> int:
    return _LOGGED_UNTIL.get(parent_run_id, {}).get(trial_id, -1)


def _start_ray() -> Any:
    import ray

    from xlt_search import interrupts

    # Every report checkpoints (one checkpoint per trial, so a trial resumes mid-phase), which
    # forces Tune to snapshot its state as often; its warning about that is the design, not news.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not ray.is_initialized():
        # Joins the cluster RAY_ADDRESS names (`ray job submit` and cluster nodes set it), else
        # one `ray start` runs on this machine, else starts a local instance: Ray's own order.
        ray.init(log_to_driver=False, configure_logging=False)
        interrupts.after_ray_init()
    return ray


def _check_resources(spec: SearchSpec, available: dict[str, float]) -> None:
    cpus, gpus = available.get("CPU", 0.0), available.get("GPU", 0.0)
    if spec.resources.gpu > 0 and gpus == 0:
        raise UserError(
            f"resources.gpu: {spec.resources.gpu:g} asks for a GPU but the Ray cluster has none; "
            "set resources.gpu: 0 to train on CPUs, or run on a cluster with GPUs"
        )
    if spec.resources.gpu > gpus:
        raise UserError(
            f"resources.gpu: {spec.resources.gpu:g} per trial, but the cluster has {gpus:g} GPUs"
        )
    if spec.resources.cpu > cpus:
        raise UserError(
            f"resources.cpu: {spec.resources.cpu:g} per trial, but the cluster has {cpus:g} CPUs; "
            "lower it"
        )


def _cache_dir(spec: SearchSpec) -> Path:
    from xlt_search.synthetic import cache_root

    return Path(spec.data.cache_dir) if spec.data.cache_dir else cache_root() / "prepared"


def _target_configs(spec: SearchSpec) -> tuple[Any, ...]:
    from xlt_search.trial import TargetConfig

    registry = spec.registry
    return tuple(
        TargetConfig(
            t.task,
            t.languages or registry[t.task].languages,
            fine_tuned=registry[t.task].kind != "retrieval",
        )
        for t in spec.targets
    )


def fixed_settings(spec: SearchSpec, model: str) -> dict[str, Any]:
    """The `TrialConfig` fields every trial of the search shares (the rest come from its config)."""
    return {
        "model": model,
        "targets": _target_configs(spec),
        "intermediate_steps": spec.budget.intermediate_steps,
        "target_steps": spec.budget.target_steps,
        "report_every_steps": spec.budget.report_every_steps,
        "probe_steps": spec.budget.probe_steps,
        "num_threads": max(1, int(spec.resources.cpu)),
        "precision": spec.precision,
    }


def _trainable(spec: SearchSpec, model: str, data: PreparedData) -> Any:
    """`_train` with the search's fixed settings and data bound, and its resources."""
    from ray import tune

    fixed = fixed_settings(spec, model)
    return tune.with_resources(
        tune.with_parameters(_train, data=data, fixed=fixed, gpu_fraction=spec.resources.gpu),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


def _build_tuner(
    spec: SearchSpec, plan: SearchPlan, trainable: Any, logger: SearchLogger, run_name: str
) -> Any:
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if spec.budget.scheduler == "asha":
        from xlt_search.scheduler import SizeStratifiedASHA

        scheduler = SizeStratifiedASHA(
            time_attr="budget_steps",
            max_t=spec.max_budget_steps,
            grace_period=spec.grace_period_steps,
            reduction_factor=spec.budget.reduction_factor,
            survivors_per_size=spec.budget.survivors_per_size,
        )
    else:
        scheduler = FIFOScheduler()
    max_concurrent = spec.max_concurrent_trials or None  # Tune's limit, for the optuna searcher
    if plan.subsets is None:
        param_space, search_alg, num_samples = {}, _optuna_searcher(spec), spec.subsets.num_samples
    else:
        keys = [subsets.subset_key(s) for s in plan.subsets]
        random.Random(spec.seed).shuffle(keys)  # sizes interleave, so early rungs see every size
        seeds = list(spec.trial_seeds)
        param_space = {
            "tasks": tune.grid_search(keys),
            "seed": tune.grid_search(seeds) if len(seeds) > 1 else seeds[0],
            # Tune calls these with the trial's config, its grid value `tasks` already chosen.
            "n_tasks": tune.sample_from(lambda c: len(subsets.parse_subset_key(c["tasks"]))),
            **{
                f"use.{task}": tune.sample_from(
                    lambda c, task=task: task in subsets.parse_subset_key(c["tasks"])
                )
                for task in spec.pool
            },
            **{name: _tune_domain(d) for name, d in spec.hyperparameters.items()},
        }
        # Seeded, so a sampled hyperparameter takes the same values each time the spec runs (Tune's
        # default generator draws from the global numpy state). It keeps to the concurrency itself.
        search_alg = BasicVariantGenerator(
            max_concurrent=spec.max_concurrent_trials, random_state=spec.seed
        )
        num_samples, max_concurrent = 1, None
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            scheduler=scheduler,
            search_alg=search_alg,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            # A trial starts in the worker of one that ended (same resources): a new worker pays
            # about 3 s of imports (torch, transformers, datasets) before its trial can start.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=_experiment_path(spec, run_name).rsplit("/", 1)[0],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[
                _mlflow_callback(logger.parent_run_id, spec.pool, spec.seed),
                _progress_callback(plan.num_trials),
            ],
            verbose=0,  # the progress callback prints one line a finished trial instead
        ),
    )


def _tune_domain(domain: Domain) -> Any:
    from ray import tune

    if domain.kind == "constant":
        return domain.values[0]
    if domain.kind == "choice":
        return tune.choice(list(domain.values))
    return getattr(tune, domain.kind)(*domain.values)


def _optuna_searcher(spec: SearchSpec) -> Any:
    """TPE over one boolean per pool task (plus the hyperparameters); a pick of a wrong size is repaired."""
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(space=_OptunaSpace(spec), metric="score", mode="max", seed=spec.seed)


@dataclass(frozen=True)
class _OptunaSpace:
    """The define-by-run space (a class, not a closure: Tune pickles the searcher with its state)."""

    spec: SearchSpec

    def __call__(self, trial: Any) -> dict[str, Any]:
        pool, spec = self.spec.pool, self.spec
        flags = {f"use.{t}": trial.suggest_categorical(f"use.{t}", [True, False]) for t in pool}
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
        return {
            "tasks": subsets.subset_key(chosen),
            "n_tasks": len(chosen),
            "seed": spec.seed,
            **constants,
        }


def _train(
    config: dict[str, Any], data: PreparedData, fixed: dict[str, Any], gpu_fraction: float
) -> None:
    """The function trainable: a trial's config -> run_trial, reporting (and checkpointing) to Tune."""
    import torch
    from ray import tune

    from xlt_search import interrupts
    from xlt_search.spec import HYPERPARAMETERS
    from xlt_search.trial import TrialConfig, checkpoint_budget_steps, run_trial

    device = "cpu"
    if gpu_fraction > 0 and torch.cuda.is_available():
        # Ray's GPU fractions are logical: the trial itself keeps to its share of the memory.
        device = "cuda"
        torch.cuda.set_per_process_memory_fraction(min(1.0, gpu_fraction))
    trial = TrialConfig(
        tasks=subsets.parse_subset_key(config["tasks"]),
        seed=config["seed"],
        device=device,
        **fixed,
        **{name: config[name] for name in HYPERPARAMETERS if name in config},
    )

    restored_from = 0  # the budget_steps of the checkpoint this run of the trial started from

    def report(metrics: dict[str, float], save_state: Any) -> None:
        with tempfile.TemporaryDirectory() as folder:
            save_state(Path(folder))
            metrics = {**metrics, "restored_from": restored_from}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        interrupts.hold_point(tune.get_context().get_trial_id(), int(metrics["budget_steps"]))

    # Tune retries every error of a trial (max_failures), as it cannot tell a lost node from the
    # trial's own failure. A retry from the checkpoint would repeat a divergence or running out of
    # the GPU share exactly, so such a failure is recorded in the trial's storage and a retry
    # raises it again at once instead of training.
    storage = tune.get_context().get_storage()
    _raise_recorded_failure(storage.storage_filesystem, storage.trial_fs_path)
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            run_trial(trial, data, report)
        else:
            with checkpoint.as_directory() as folder:
                restored_from = checkpoint_budget_steps(Path(folder))
                run_trial(trial, data, report, resume_from=Path(folder))
    except tuple(_repeating_failures().values()) as error:
        _record_failure(storage.storage_filesystem, storage.trial_fs_path, error)
        raise
    if device == "cuda":
        torch.cuda.empty_cache()


FAILURE_FILE = "repeating_failure.json"  # in a trial's storage folder: see _train


def _repeating_failures() -> dict[str, type[Exception]]:
    """A trial's own failures that a retry from its checkpoint would repeat exactly, by name."""
    import torch

    return {kind.__name__: kind for kind in (TrialDiverged, torch.cuda.OutOfMemoryError)}


def _record_failure(filesystem: Any, trial_path: str, error: Exception) -> None:
    filesystem.create_dir(trial_path, recursive=True)
    with filesystem.open_output_stream(f"{trial_path}/{FAILURE_FILE}") as stream:
        stream.write(json.dumps({"type": type(error).__name__, "message": str(error)}).encode())


def _raise_recorded_failure(filesystem: Any, trial_path: str) -> None:
    """Raise the failure an earlier try of this trial recorded, if any."""
    import pyarrow.fs

    path = f"{trial_path}/{FAILURE_FILE}"
    if filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return
    with filesystem.open_input_stream(path) as stream:
        failure = json.loads(stream.read())
    raise _repeating_failures()[failure["type"]](
        f"{failure['message']} (raised again without training: an earlier try of this trial "
        "failed so, and a retry from its checkpoint would only repeat it)"
    )


def _trial_params(config: dict[str, Any], pool: tuple[str, ...]) -> dict[str, Any]:
    """The MLflow params of a trial: its subset, its size, one flag per pool task, its hyperparameters."""
    from xlt_search.spec import HYPERPARAMETERS

    chosen = subsets.parse_subset_key(config["tasks"])
    return {
        "tasks": config["tasks"],
        "n_tasks": len(chosen),
        "seed": config["seed"],
        **subsets.use_flags(chosen, pool),
        **{name: config[name] for name in HYPERPARAMETERS if name in config},
    }


def _make_callback_class() -> type:
    from ray.tune import Callback

    class MLflowCallback(Callback):
        """Forwards Tune's trial events to the MLflow logger, on the driver only."""

        def __init__(self, parent_run_id: str, pool: tuple[str, ...], seed: int) -> None:
            self.parent_run_id, self.pool, self.seed = parent_run_id, pool, seed

        @property
        def logger(self) -> SearchLogger:
            return _logger_for(self.parent_run_id)

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            # A retried or resumed trial reopens its run rather than starting another.
            params = _trial_params(trial.config, self.pool)
            name = f"k{params['n_tasks']}-{params['tasks'] or 'baseline'}"
            if trial.config["seed"] != self.seed:
                name += f"-seed{trial.config['seed']}"
            self.logger.trial_started(trial.trial_id, name[:250], params)

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            metrics = {
                key: value
                for key, value in result.items()
                if isinstance(value, int | float)
                and not isinstance(value, bool)
                and _is_metric(key)
            }
            step = int(result["budget_steps"])
            if step <= _logged_until(self.parent_run_id, trial.trial_id):
                return  # logged before the search was interrupted
            self.logger.trial_result(trial.trial_id, metrics, step=step)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.logger.trial_ended(trial.trial_id, _ended_status(trial))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            # The trial's local error file: written before this call, unlike its synced copy.
            path = trial.error_file
            text = Path(path).read_text() if path and Path(path).is_file() else "unknown error"
            reason = next(
                (line for line in reversed(str(text).splitlines()) if line.strip()), "unknown"
            )
            self.logger.trial_ended(trial.trial_id, "errored", error=reason[:500])

    return MLflowCallback


def _ended_status(trial: Any) -> str:
    """A trial that ended without error: completed if it ran its whole budget, else ASHA cut it."""
    final = (trial.last_result or {}).get("final", 0.0) == 1.0
    return "completed" if final else "early_stopped"


def _is_metric(key: str) -> bool:
    """Ours, not Tune's bookkeeping (time_this_iter_s, training_iteration, ...)."""
    ours = ("score", "loss", "budget_steps", "final", "phase", "restored_from")
    return key in ours or key.split(".")[0] in (
        "score",
        "lang",
        "family",
    )


def _mlflow_callback(parent_run_id: str, pool: tuple[str, ...], seed: int) -> Any:
    """A Tune callback (its class is made lazily: Ray is imported only when a search runs)."""
    return _make_callback_class()(parent_run_id, pool, seed)


def _progress_callback(num_trials: int) -> Any:
    """A Tune callback that prints one line per finished trial: how far the search is, the
    trial's subset, status and score, and the best score so far."""
    from ray.tune import Callback

    class ProgressCallback(Callback):
        def __init__(self) -> None:
            self.ended, self.best = 0, (float("-inf"), "")

        def _line(self, trial: Any, status: str) -> None:
            self.ended += 1
            result = trial.last_result or {}
            score = result.get("score")
            size, subset = trial.config.get("n_tasks"), trial.config.get("tasks") or "baseline"
            if status == "completed" and score is not None and size:
                self.best = max(self.best, (score, f"k={size}"))
            shown = f"{score:.4f}" if score is not None else "-"
            best = f" | best completed {self.best[0]:.4f} ({self.best[1]})" if self.best[1] else ""
            print(
                f"[{self.ended:>{len(str(num_trials))}}/{num_trials}] {status:<13} "
                f"score {shown} at budget_steps {result.get('budget_steps', 0):<5}{best} | "
                f"k={size} {subset}",
                flush=True,
            )

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._line(trial, _ended_status(trial))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._line(trial, "errored")

    return ProgressCallback()
