"""The driver of a search: prepare it, start (or resume) it under Tune, write its report.

Everything that needs no Ray is checked, and the data prepared, before Ray starts, so a mistake
costs seconds. Ray, and the modules that import it (tuner, trainable, callbacks), are imported
only once a search runs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlt_search.search import checks, interrupts, ray_instance
from xlt_search.search.paths import cache_dir, experiment_path, results_dir
from xlt_search.search.plan import make_plan, target_configs
from xlt_search.search.progress import STATUS_EVERY_S

if TYPE_CHECKING:
    from xlt_search.data import PreparedData, SplitCoverage
    from xlt_search.spec import SearchSpec
    from xlt_search.tracking import SearchLogger


@dataclass(frozen=True)
class RunOptions:
    """How a search runs, beside its spec: the Ray it runs on and what it prints."""

    address: str | None = None  # a cluster to join; None: $RAY_ADDRESS, else a local instance
    verbose: bool = False  # Tune's own status tables too
    status_every_s: float = STATUS_EVERY_S  # the status line's period


def run_search(spec: SearchSpec, spec_text: str, options: RunOptions | None = None) -> Path:
    """Run the whole search: prepare data, train the trials under Tune, log to MLflow, draw the curve.

    Returns the folder with the search's results (the scaling curve's CSV and PNG among them).
    """
    from xlt_search import tracking

    options = options or RunOptions()
    plan = make_plan(spec)
    target = ray_instance.ray_target(options.address)  # a cluster that does not answer: now
    model, data, measured = prepare_search(spec)  # the tracking URI is its first check
    from xlt_search.analysis import chance  # after the model's check: they import the hub's
    from xlt_search.data import coverage, mixing  # libraries (preflight.check_hub_model)

    levels = chance.chance_levels(data, {t.task: t.languages for t in target_configs(spec)})
    ray = ray_instance.start_ray(target)
    checks.check_resources(spec, ray.cluster_resources())
    checks.check_cluster(spec, ray)

    run_name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    results = results_dir(spec, run_name)
    logger = tracking.SearchLogger(spec.tracking_uri, journal_dir=results)
    logger.start(
        spec.experiment,
        run_name,
        spec_text,
        tags={
            "xlt.sampler": spec.subsets.sampler,
            tracking.EXPERIMENT_PATH_TAG: experiment_path(spec, run_name),
            chance.TAG: chance.to_tag(levels),
            coverage.TAG: coverage.summary(measured),
            **({mixing.TAG: json.dumps(data.alignments)} if data.alignments else {}),
        },
    )
    results.mkdir(parents=True, exist_ok=True)
    (results / coverage.ARTIFACT).write_text(coverage.to_json(measured, spec.known_languages))
    logger.log_artifact(results / coverage.ARTIFACT)

    def build() -> Any:
        from xlt_search.search.tuner import build_tuner

        return build_tuner(plan, model, data, logger, run_name, verbose=options.verbose)

    return _fit(spec, build, logger, run_name, options)


def resume_search(
    experiment: str,
    tracking_uri: str | None,
    run_id: str | None,
    options: RunOptions | None = None,
) -> Path:
    """Continue an interrupted search: finished trials stay as they are, unfinished ones continue
    from their checkpoints, the searcher's state comes back, and MLflow's runs are reused."""
    import yaml

    from xlt_search import preflight, tracking
    from xlt_search.spec import parse_spec

    options = options or RunOptions()
    target = ray_instance.ray_target(options.address)
    tracking.check_tracking_uri(tracking_uri)
    found = tracking.find_search(experiment, tracking_uri, run_id)
    spec = parse_spec(yaml.safe_load(found.spec_text))
    preflight.check_model(spec.model)  # before anything imports the hub's libraries
    # The logged spec's own URI has its password masked: the store the search was found in has it.
    if spec.tracking_uri in (None, tracking.masked(found.tracking_uri)) or tracking_uri:
        spec = dataclasses.replace(
            spec, mlflow=dataclasses.replace(spec.mlflow, tracking_uri=found.tracking_uri)
        )
    path = found.experiment_path
    checks.check_experiment(path)
    model, data, _ = prepare_search(spec)
    ray = ray_instance.start_ray(target)  # Ray is imported no earlier (ray_instance says why)
    checks.check_resources(spec, ray.cluster_resources())
    checks.check_cluster(spec, ray)

    logger = tracking.SearchLogger(
        found.tracking_uri, journal_dir=results_dir(spec, Path(path).name)
    )
    logger.resume(found.run_id)

    def restore() -> Any:
        from xlt_search.search import callbacks
        from xlt_search.search.tuner import restore_tuner

        logged = tracking.load_trials(spec.experiment, found.tracking_uri, found.run_id)
        callbacks.skip_logged(
            found.run_id,
            {
                row["trial_id"]: int(row["budget_steps"])
                for _, row in logged.iterrows()
                if row["budget_steps"] == row["budget_steps"]  # not NaN: the trial had reported
            },
        )
        print(f"resuming {path} (MLflow parent run {found.run_id})")
        return restore_tuner(path, spec, model, data)

    return _fit(spec, restore, logger, Path(path).name, options)


def prepare_search(spec: SearchSpec) -> tuple[str, PreparedData, dict[str, SplitCoverage]]:
    """Every check a search makes before Ray starts, then its data: the tracking URI, the storage
    path, the model, each split loaded, checked and tokenized (`xlt-search prepare` stops here).

    Prints the tokenizer's coverage of every split, and a warning line for splits with many
    unknown tokens; a split that is mostly unknown tokens stops the search unless the spec sets
    `data.allow_unknown_tokens`. Returns the model, the prepared data and the coverage.
    """
    from xlt_search import tracking

    tracking.check_tracking_uri(spec.tracking_uri)
    checks.check_storage(spec)
    model, data = prepare_search_data(spec)
    from xlt_search.data import coverage  # after the model's check, as in prepare_search_data

    measured = coverage.load(data)
    print(coverage.table(measured, spec.known_languages, spec.data.max_seq_length))
    for line in coverage.check(measured, spec.model, spec.data.allow_unknown_tokens):
        print(f"xlt-search: warning: {line}", file=sys.stderr, flush=True)
    return model, data, measured


def prepare_search_data(spec: SearchSpec, cached_only: bool = False) -> tuple[str, PreparedData]:
    """The model's local folder (or hub id), checked (`preflight.check_model`), and every split
    the search reads, tokenized once.

    With `cached_only`, quietly: the splits already in the cache, nothing loaded or tokenized.
    """
    from xlt_search import preflight

    model = preflight.check_model(spec.model, load=True)  # before the libraries of the hub
    from xlt_search.data import augmented, prepare_data
    from xlt_search.trial import required_splits

    if not cached_only:
        print(
            f"preparing data for {len(spec.pool)} intermediate and {len(spec.targets)} target tasks"
        )
    started = time.perf_counter()
    data = prepare_data(
        required_splits(
            spec.pool,
            target_configs(spec),
            spec.registry,
            spec.subsets.controls,
            languages=spec.intermediate_languages,
            augmentations=[augmented(copies) for copies in spec.augmented_copies],
            augment_intermediate=spec.augments_intermediate,
        ),
        tokenizer=model,
        max_seq_length=spec.data.max_seq_length,
        max_train_examples=spec.data.max_train_examples,
        max_train_examples_per_task=spec.data.max_train_examples_per_task,
        cache_dir=cache_dir(spec),
        seed=spec.seed,
        registry=spec.registry,
        languages=spec.known_languages,
        mirror=spec.data.mirror,
        synonyms=spec.data.synonyms,
        progress=lambda line: print(f"  {line}", flush=True),
        cached_only=cached_only,
    )
    if not cached_only:
        print(f"data ready in {time.perf_counter() - started:.1f} s: {data.root}")
    return model, data


def _fit(
    spec: SearchSpec,
    make_tuner: Callable[[], Any],
    logger: SearchLogger,
    run_name: str,
    options: RunOptions,
) -> Path:
    """Make and run (or continue) the Tuner, then write the report and close the parent run.

    SIGINT or SIGTERM stops the trials, keeping their checkpoints and what they logged, and closes
    the parent run as KILLED without a report; KeyboardInterrupt goes on to the caller.
    """
    from xlt_search.analysis import report
    from xlt_search.search import callbacks

    results = results_dir(spec, run_name)
    try:
        with callbacks.delivering_to(logger), callbacks.status_every(options.status_every_s):
            grid = interrupts.fit(make_tuner())
        if logger.flush():  # MLflow is down: the runs are journaled, the report waits for them
            logger.finish("FINISHED")
            print(
                f"the report needs MLflow: once `xlt-search sync {results}` has delivered "
                f"the journal, write it with `xlt-search report {spec.experiment}`"
            )
            return results
        written = report.write_report(
            spec, logger.tracking_uri, logger.parent_run_id, results / "report"
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
    return results
