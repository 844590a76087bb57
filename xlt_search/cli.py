"""The `xlt-search` command: prepare, run or resume a search, list past searches, report on one,
export a trial's models, sync its logs, list the tasks, build an encoder over a spec's own words.

Bad input ends with one line on stderr and exit status 2; --debug shows the traceback instead.
A search stopped by Ctrl-C (SIGINT) or SIGTERM ends with one line that says how to continue it,
and exit status 130. Output into a pipe whose reader has gone (`xlt-search tasks | head`) ends the
command quietly with 141, as a shell reports a command that SIGPIPE ended.
"""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from xlt_search.errors import SearchInterrupted, UserError
from xlt_search.search import EXIT_INTERRUPTED, STATUS_EVERY_S, stop_on_signals

if TYPE_CHECKING:
    from xlt_search.search import RunOptions

EXIT_USER_ERROR, EXIT_BROKEN_PIPE = 2, 141  # the second: 128 + SIGPIPE, as a shell reports it


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verbose", False):
        _quiet_libraries()
    try:
        return args.command(args)
    except UserError as error:
        if args.debug:
            raise
        print(f"xlt-search: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except SearchInterrupted as stopped:
        print(f"xlt-search: {stopped}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # a command other than a search's
        print("xlt-search: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        if args.debug or error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EPIPE):
            raise
        if error.errno == errno.EPIPE:  # stdout's reader has gone; Python flushes it at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        where = f" writing {error.filename}" if error.filename else ""
        print(
            f"xlt-search: error: the disk is full{where} ({error.strerror}); free some space, "
            "or point storage_path or data.cache_dir at another disk, then run the command "
            "again: what was written whole before stays",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlt-search",
        description="Search over English intermediate tasks for zero-shot cross-lingual transfer.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a search from a spec file")
    run.add_argument("spec", type=Path, help="a YAML spec, e.g. search_spaces/quickstart.yaml")
    run.add_argument("--dry-run", action="store_true", help="print the plan and its bill, and stop")
    run.add_argument("--on", metavar="DEVICE", help="the bill's device: cpu, H100, A100-40GB, ...")
    run.add_argument("--price-per-hour", type=float, metavar="PRICE", help="of a device-hour")
    _add_set(run)
    _add_search_options(run)
    run.set_defaults(command=_run)

    prepare = commands.add_parser(
        "prepare",
        help="check and tokenize every split a spec needs, print the tokenizer's coverage; "
        "starts no Ray",
    )
    prepare.add_argument("spec", type=Path, help="a YAML spec")
    _add_set(prepare)
    prepare.add_argument("--verbose", action="store_true", help="show the libraries' progress bars")
    prepare.set_defaults(command=_prepare)

    resume = commands.add_parser(
        "resume", help="continue an interrupted search from its checkpoints and MLflow runs"
    )
    resume.add_argument("experiment", help="the search's MLflow experiment (a spec's name)")
    resume.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    resume.add_argument("--run-id", help="the search's parent run (default: the newest)")
    _add_search_options(resume)
    resume.set_defaults(command=_resume)

    searches = commands.add_parser(
        "list", help="the searches in the tracking store: state, trials ended, best score"
    )
    searches.add_argument("experiment", nargs="?", help="only this MLflow experiment's searches")
    searches.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    searches.set_defaults(command=_list)

    report = commands.add_parser(
        "report",
        help="a search's report from MLflow: curves, contributions, gains, summary",
    )
    report.add_argument("experiment", help="the MLflow experiment (a spec's name by default)")
    report.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    report.add_argument("--run-id", help="the search's parent run (default: the newest)")
    report.add_argument(
        "--out", type=Path, default=None, help="the folder to write (default: report-<run id>)"
    )
    report.set_defaults(command=_report)

    export = commands.add_parser(
        "export",
        help="write a trial's models (the search's best by default) as save_pretrained folders",
    )
    export.add_argument("experiment", help="the search's MLflow experiment (a spec's name)")
    export.add_argument("out", type=Path, help="the folder to write (new or empty)")
    export.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    export.add_argument("--run-id", help="the search's parent run (default: the newest)")
    export.add_argument(
        "--trial-run-id", help="the trial's MLflow child run (default: the best completed trial)"
    )
    export.set_defaults(command=_export)

    sync = commands.add_parser(
        "sync", help="deliver to MLflow what a search logged while its server was unreachable"
    )
    sync.add_argument(
        "path", type=Path, help="the search's results folder, <storage_path>/<run name>"
    )
    sync.add_argument("--tracking-uri", help="default: the tracking URI the search logged to")
    sync.set_defaults(command=_sync)

    tasks = commands.add_parser("tasks", help="list the registered tasks, or show one")
    tasks.add_argument("task", nargs="?", help="show this task's whole declaration")
    tasks.add_argument("--spec", type=Path, help="include the tasks a spec adds or changes")
    tasks.set_defaults(command=_tasks)

    encoder = commands.add_parser(
        "encoder",
        help="build a tiny encoder and word-level tokenizer over the words of a spec's tasks",
    )
    encoder.add_argument("spec", type=Path, help="the spec whose tasks' data gives the words")
    encoder.add_argument("out", type=Path, help="the folder to write (new or empty)")
    encoder.add_argument("--hidden-size", type=int, default=64, help="default: 64 (even)")
    encoder.add_argument("--intermediate-size", type=int, default=128, help="default: 128")
    _add_set(encoder)
    encoder.set_defaults(command=_encoder)
    return parser


def _version() -> str:
    """The installed package's version, from its metadata."""
    try:
        return importlib.metadata.version("xlt-search")
    except importlib.metadata.PackageNotFoundError:  # imported from a checkout never installed
        return "(not installed: `pip install -e .` records the version)"


def _add_set(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="change a key of the spec before it is checked, the value read as YAML "
        "(e.g. --set budget.target_steps=200 --set pool=[mnli,qqp]); repeatable",
    )


def _add_search_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--address",
        help="join the Ray cluster at HOST:PORT (or auto: the one `ray start` made here); "
        "default: $RAY_ADDRESS, else a local Ray instance on 127.0.0.1",
    )
    command.add_argument(
        "--status-every-s",
        type=float,
        default=STATUS_EVERY_S,
        metavar="SECONDS",
        help=f"print the search's status line this often, and as each trial ends "
        f"(default: {STATUS_EVERY_S:g})",
    )
    command.add_argument(
        "--verbose",
        action="store_true",
        help="show the libraries' progress bars and Tune's own tables too",
    )


def _run_options(args: argparse.Namespace) -> RunOptions:
    from xlt_search.search import RunOptions

    if not args.status_every_s > 0:
        raise UserError(f"--status-every-s {args.status_every_s:g}: give a period above 0 seconds")
    return RunOptions(args.address, args.verbose, args.status_every_s)


def _quiet_libraries() -> None:
    """Turn off what the libraries print that is not the user's business: the progress bars of
    datasets, the hub and tqdm, and Tune's start-up table and TensorBoard hint (Tune's old output
    engine prints nothing at verbose 0). Each is read as its library is imported, so this runs
    first; a variable the user set stays as it is."""
    for name, value in (
        ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TQDM_DISABLE", "1"),
        ("RAY_AIR_NEW_OUTPUT", "0"),
    ):
        os.environ.setdefault(name, value)


def _run(args: argparse.Namespace) -> int:
    from xlt_search.preflight import check_model
    from xlt_search.search import describe_plan, make_plan
    from xlt_search.spec import parse_source, read_spec
    from xlt_search.tracking import masked

    source = read_spec(args.spec, args.set)
    spec = parse_source(source)
    options = _run_options(args)
    check_model(spec.model)  # a local folder exists and holds a model; nothing is loaded yet
    if not args.dry_run and (args.on or args.price_per_hour is not None):
        raise UserError("--on and --price-per-hour price a dry run: add --dry-run")
    plan = make_plan(spec)
    print(describe_plan(plan))
    if args.dry_run:
        from xlt_search.search.bill import bill_for

        print(bill_for(plan, args.on, args.price_per_hour))
        return 0
    from xlt_search.search import run_search

    # resume looks in $MLFLOW_TRACKING_URI (or ./mlflow.db) unless told the spec's own store
    uri = spec.mlflow.tracking_uri
    address = ["--address", args.address] if args.address else []
    found_in = (["--tracking-uri", masked(uri)] if uri else []) + address
    with stop_on_signals(spec.experiment, *found_in, restart=_run_command(args, *address)):
        run_search(spec, source.text, options)
    return 0


def _run_command(args: argparse.Namespace, *options: str) -> str:
    """The command that runs the spec `args` name, with its --set options (a password masked),
    then `options`."""
    from xlt_search.tracking import masked

    sets = [option for value in args.set for option in ("--set", masked(value))]
    return shlex.join(["xlt-search", "run", str(args.spec), *sets, *options])


def _prepare(args: argparse.Namespace) -> int:
    from xlt_search.search import prepare_search
    from xlt_search.spec import load_spec

    spec = load_spec(args.spec, args.set)
    _, data, measured = prepare_search(spec)
    print(
        f"{len(measured)} splits ready in {data.root}; nothing was started: "
        f"`{_run_command(args)}` searches"
    )
    return 0


def _encoder(args: argparse.Namespace) -> int:
    from xlt_search.own_encoder import build_encoder
    from xlt_search.spec import load_spec

    spec = load_spec(args.spec, args.set)
    built = build_encoder(
        spec,
        args.out,
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        progress=lambda line: print(f"  {line}", flush=True),
    )
    print(
        f"wrote a tokenizer of {built.words} words (from {built.splits} splits) and an encoder "
        f"of hidden size {args.hidden_size} to {built.folder}; set model: {built.folder} in a "
        "spec to search with it"
    )
    return 0


def _resume(args: argparse.Namespace) -> int:
    from xlt_search.search import resume_search
    from xlt_search.tracking import masked

    run_options = _run_options(args)
    options = ["--tracking-uri", masked(args.tracking_uri)] if args.tracking_uri else []
    options += ["--run-id", args.run_id] if args.run_id else []
    options += ["--address", args.address] if args.address else []
    with stop_on_signals(args.experiment, *options):
        resume_search(args.experiment, args.tracking_uri, args.run_id, run_options)
    return 0


def _list(args: argparse.Namespace) -> int:
    from xlt_search import tracking
    from xlt_search.listing import print_table, search_rows

    # a bar per spec read back says nothing the table does not
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tracking.check_tracking_uri(args.tracking_uri)
    found = tracking.list_searches(args.tracking_uri, args.experiment)
    if not found:
        where = f"experiment '{args.experiment}'" if args.experiment else "the tracking store"
        print(f"no search in {where} yet: `xlt-search run SPEC` starts one")
        return 0
    print_table(search_rows(found))
    return 0


def _report(args: argparse.Namespace) -> int:
    import yaml

    from xlt_search import tracking
    from xlt_search.analysis.report import mark_parent_run, write_report
    from xlt_search.spec import parse_spec

    uri = args.tracking_uri  # None: $MLFLOW_TRACKING_URI, else MLflow's default
    tracking.check_tracking_uri(uri)
    found = tracking.find_search(args.experiment, uri, args.run_id)
    spec = parse_spec(yaml.safe_load(found.spec_text))
    out = args.out or Path(f"report-{found.run_id}")
    written = write_report(spec, found.tracking_uri, found.run_id, out)
    print(written.average_table())
    print("\n".join(written.conclusion()))
    mark_parent_run(written, found.tracking_uri, found.run_id)
    tracking.log_search_artifacts(found.tracking_uri, found.run_id, written.files)
    print(f"logged the report's {len(written.files)} files on the search's run {found.run_id}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from transformers.utils import logging

    from xlt_search import tracking
    from xlt_search.export import export_trial

    logging.disable_progress_bar()  # a bar per folder written says nothing the last line does not
    tracking.check_tracking_uri(args.tracking_uri)
    summary = export_trial(
        args.experiment, args.out, args.tracking_uri, args.run_id, args.trial_run_id
    )
    folders = ", ".join(f"{name}/" for name in ("encoder", *summary["targets"]))
    print(
        f"exported trial {summary['run_name']} (run {summary['trial_run_id']}, score "
        f"{summary['score']:.4f}) to {args.out}: {folders} and export.json"
    )
    return 0


def _sync(args: argparse.Namespace) -> int:
    from xlt_search import tracking

    delivered = tracking.sync(args.path, args.tracking_uri)
    if delivered:
        print(f"delivered {delivered} logging operations from {args.path} to MLflow")
    else:
        print(f"nothing to deliver: MLflow has every operation journaled in {args.path}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from xlt_search.listing import print_table, task_rows
    from xlt_search.tasks import REGISTRY, get_task

    registry = REGISTRY
    if args.spec is not None:
        from xlt_search.spec import load_spec

        registry = load_spec(args.spec).registry
    if args.task:
        print(get_task(args.task, registry).describe())
        return 0
    print_table(task_rows(registry))
    noted = [task for task in registry.values() if task.note]
    if noted:
        print("\nnotes (`xlt-search tasks TASK` shows a task's whole declaration):")
        for task in noted:
            print(f"  {task.key}: {task.note}")
    return 0
