"""The `xlt-search` command: run a search, draw its scaling curve, list the tasks.

Bad input ends with one line on stderr and exit status 2; --debug shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xlt_search.errors import UserError

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except UserError as error:
        if args.debug:
            raise
        print(f"xlt-search: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("xlt-search: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlt-search",
        description="Search over English intermediate tasks for zero-shot cross-lingual transfer.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a search from a spec file")
    run.add_argument("spec", type=Path, help="a YAML spec, e.g. search_spaces/quickstart.yaml")
    run.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    run.set_defaults(command=_run)

    curves = commands.add_parser("curves", help="the scaling curve of a search, from MLflow")
    curves.add_argument("experiment", help="the MLflow experiment (a spec's name by default)")
    curves.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    curves.add_argument("--run-id", help="the search's parent run (default: the newest)")
    curves.add_argument("--out", type=Path, default=Path("curves"), help="where to write CSV + PNG")
    curves.set_defaults(command=_curves)

    tasks = commands.add_parser("tasks", help="list the registered tasks")
    tasks.set_defaults(command=_tasks)
    return parser


def _run(args: argparse.Namespace) -> int:
    from xlt_search.search import describe_plan, make_plan
    from xlt_search.spec import load_spec

    spec = load_spec(args.spec)
    print(describe_plan(make_plan(spec)))
    if args.dry_run:
        return 0
    from xlt_search.search import run_search

    run_search(spec, args.spec.read_text())
    return 0


def _curves(args: argparse.Namespace) -> int:
    from xlt_search import curves, tracking

    uri = (
        args.tracking_uri
    )  # None: $MLFLOW_TRACKING_URI, else MLflow's default (tracking resolves it)
    tracking.check_tracking_uri(uri)
    trials = tracking.load_trials(args.experiment, uri, args.run_id)
    table = curves.scaling_curve(trials)
    print(curves.format_table(table))
    paths = curves.write_curve(table, args.out, title=args.experiment)
    parent = trials.attrs["parent_run_id"]
    tracking.log_search_artifacts(uri, parent, paths)
    print(f"wrote {paths[0]} and {paths[1]}, and logged them on the search's run {parent}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from xlt_search.tasks import REGISTRY

    rows = [("task", "kind", "source", "languages", "metric")]
    for task in REGISTRY.values():
        languages = ",".join(task.languages)
        rows.append((task.key, task.kind, task.source.path, languages, task.metric))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0
