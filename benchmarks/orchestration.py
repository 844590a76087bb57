"""Orchestration at scale: thousands of trials that only report, through the real driver,
callbacks and MLflow server, on a two-node cluster on this machine.

    python benchmarks/orchestration.py                     # 2,000 trials
    python benchmarks/orchestration.py --scaling           # 500, 1,000 and 2,000 trials
    python benchmarks/orchestration.py --trials 20         # a smoke run
    python benchmarks/orchestration.py --trials 250 --profile /tmp/loop.prof   # where it goes

Starts a two-node Ray cluster (`ray start --head`, then `ray start --address`; each node its own
--temp-dir and free ports, `--node-ip-address=127.0.0.1`) and, for each size, an `mlflow
server` on 127.0.0.1 with a new store; then runs `xlt-search run --address` on the quickstart's
pool, targets and budget (reports every 400 budget_steps: 3 a trial, 2 for the baseline) under
its size-stratified ASHA, with the random sampler over the nine tasks and as many training
seeds as the trials need (2,000 = 500 configurations, the baseline one of them, x 4 seeds),
`--concurrent` (8) trials at once on the two nodes' `--cpus-per-node` (4) logical CPUs each.
The trials' workers run at nice 0 (`RAY_worker_niceness`), not Ray's 15, so that on a machine
shared with other work they do not wait behind it. `--keep DIR` keeps the stores and logs.

The one thing replaced: in the driver's process (this script, run as the driver) the trainable
that `build_tuner` uses is the real one's wrapper (`with_resources(with_parameters(fn, data=,
spec=, model=))`) around `report_only` instead of the training function. A trial makes its
`TrialConfig` from the spec and its Tune config as a real one does, then reports at each
budget_steps of the protocol's schedule the metrics a real report carries (`report_metrics`
of made-up scores for every target, language and gold label), each with a checkpoint, with no
model, no data read and no training. Everything else is the real search: data preparation,
the checks, Tune's loop, the scheduler, the MLflow callback, its queue, journal and delivery
thread, the progress lines, the report at the end.

Measured in the driver, by timers wrapped around the real methods: the time the MLflow
callback's calls take on Tune's loop (they should only queue), each MLflow request the
delivery thread makes, how far behind the queue ran (operations queued and not yet delivered,
and the longest an operation waited), and whether an MLflow request ever completed inside a
callback call (a trial waits on MLflow only if one did: Tune takes a trial's next report only
after its callbacks have returned). Outside it: the driver's wall time and CPU seconds (psutil,
`common.run_search`), and `xlt-search report` on the finished search, timed. With `--scaling`
the same at N/4, N/2 and N, and each per-trial figure at N against N/4: a per-trial cost that
grows by more than 1.5x over the 4x is called faster than linear.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import cProfile
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from common import isolate, run_search

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' loopback MLflow server and free ports
from processes import MlflowServer, free_port  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
EXPERIMENT = "orchestration"
REPORT_EVERY_STEPS = 400  # 3 reports of a trial with tasks (400, 800, 1200), 2 of the baseline
FASTER_THAN_LINEAR = 1.5  # per-trial cost at N over N/4 above which a figure grows faster


# -- the trial (runs in Ray's workers) -------------------------------------------------------


def report_steps(trial: Any) -> list[tuple[int, Any]]:
    """The budget_steps at which the protocol reports, with their phase: every
    `report_every_steps` of the intermediate phase (a trial with tasks), then of the target
    phase, whose last step always reports."""
    from xlt_search.trial import Phase

    every, last = trial.report_every_steps, trial.final_budget_steps
    start = last - trial.target_steps * len(trial.fine_tuned_targets)
    steps = [(s, Phase.INTERMEDIATE) for s in range(every, start + 1, every)] if trial.tasks else []
    steps += [(s, Phase.TARGET) for s in range(start + 1, last + 1) if s % every == 0 or s == last]
    return steps


def report_only(config: dict[str, Any], data: Any, spec: Any, model: str) -> None:
    """A trial that only reports: at each budget_steps of its schedule, a real report's metrics
    of made-up scores (drawn from its subset and seed), with a checkpoint, as fast as Tune
    takes them."""
    from ray import tune

    from xlt_search.search.plan import trial_config
    from xlt_search.trial import report_metrics

    trial = trial_config(spec, model, config)
    rng = random.Random(f"{config['tasks']}/{config['seed']}")
    quality = rng.random()
    for budget_steps, phase in report_steps(trial):
        share = budget_steps / trial.final_budget_steps
        scores = {}
        for target in trial.targets:
            task = data.task(target.task)
            labels = task.labels or tuple(str(i) for i in range(task.num_labels))
            scores[target.task] = {
                lang: {
                    task.metric: 0.3 + 0.4 * quality * share + 0.05 * rng.random(),
                    **{f"label.{label}": rng.random() for label in labels},
                }
                for lang in target.languages
            }
        final = budget_steps == trial.final_budget_steps
        metrics = report_metrics(scores, data, budget_steps, 1.0 - share / 2, phase, final)
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "state.json").write_text(json.dumps(metrics))
            tune.report(
                {**metrics, "restored_from": 0}, checkpoint=tune.Checkpoint.from_directory(folder)
            )


def report_only_trainable(spec: Any, model: str, data: Any) -> Any:
    """`search.trainable.trainable`'s wrapper around `report_only`."""
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(report_only, data=data, spec=spec, model=model),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


# -- the driver (this script as `drive --timings FILE run SPEC ...`) --------------------------


class Timings:
    """What the driver's timers saw, on `time.perf_counter`'s clock."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, int, int]] = []  # callback: start, end, ops put
        self.puts: list[float] = []  # when each operation was queued, in order
        self.applied: list[float] = []  # when MLflow took each, in the same order
        self.request_s: list[float] = []  # each delivered operation's MLflow request(s)
        self.fit: dict[str, float] = {}  # Tune's loop: wall start and end, process CPU

    def timed_callback(self, method: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            first, started = len(self.puts), time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.calls.append((started, time.perf_counter(), first, len(self.puts)))

        return timed


def drive(argv: list[str]) -> int:
    """The CLI (`argv[3:]`), with the report-only trainable and the timers, writing what they
    saw to the file `argv[1]` when it ends, and Tune's loop under cProfile to the file
    `argv[2]` unless it is `-`."""
    from xlt_search import cli
    from xlt_search.search import interrupts, ray_instance
    from xlt_search.tracking.delivery import Delivery
    from xlt_search.tracking.runs import Runs

    timings = Timings()
    put, apply, fit, start_ray = Delivery.put, Runs.apply, interrupts.fit, ray_instance.start_ray

    def timed_put(self: Delivery, operation: dict[str, Any]) -> None:
        timings.puts.append(time.perf_counter())
        put(self, operation)

    def timed_apply(self: Runs, operation: dict[str, Any]) -> str | None:
        started = time.perf_counter()
        reason = apply(self, operation)
        if reason is None:  # taken (a refused one is tried again)
            timings.applied.append(time.perf_counter())
            timings.request_s.append(timings.applied[-1] - started)
        return reason

    def timed_fit(tuner: Any) -> Any:
        profile = cProfile.Profile() if argv[2] != "-" else None
        timings.fit = {"start": time.perf_counter(), "cpu_start": time.process_time()}
        try:
            with profile or contextlib.nullcontext():
                return fit(tuner)
        finally:
            timings.fit.update(end=time.perf_counter(), cpu_end=time.process_time())
            if profile is not None:
                profile.dump_stats(argv[2])

    def start_ray_then_swap(target: Any) -> Any:
        ray = start_ray(target)  # Ray is imported no earlier (ray_instance says why)
        from xlt_search.search import callbacks, tuner

        tuner.trainable = report_only_trainable
        for name in ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error"):
            method = getattr(callbacks.MLflowCallback, name)
            setattr(callbacks.MLflowCallback, name, timings.timed_callback(method))
        return ray

    Delivery.put, Runs.apply, interrupts.fit = timed_put, timed_apply, timed_fit
    ray_instance.start_ray = start_ray_then_swap
    try:
        return cli.main(argv[3:])
    finally:
        Path(argv[1]).write_text(json.dumps(vars(timings)))


# -- the cluster, the server, one search -----------------------------------------------------


def _ray_start(args: list[str], folder: Path, log: Path, env: dict[str, str]) -> int:
    """`ray start ARGS` for one node, its daemons in a process group of their own; the group."""
    node = subprocess.Popen(
        [
            RAY, "start", *args, "--node-ip-address=127.0.0.1", f"--temp-dir={folder}",
            f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the node's daemons stay in this process group
    )  # fmt: skip
    if node.wait(timeout=300) != 0:
        raise RuntimeError(f"ray start failed: {log.read_text()[-3000:]}")
    return node.pid


@contextlib.contextmanager
def two_node_cluster(work: Path, cpus_per_node: int, env: dict[str, str]) -> Iterator[str]:
    """A head and a second node on this machine; yields the address the head registered. Both
    nodes' processes are killed, by their process groups, when the block ends."""
    groups: list[int] = []
    try:
        port, head_dir = free_port(), work / "ray-head"
        groups.append(
            _ray_start(
                [
                    "--head", f"--port={port}", f"--ray-client-server-port={free_port()}",
                    "--include-dashboard=false", f"--num-cpus={cpus_per_node}",
                ],
                head_dir, work / "ray-head.log", env,
            )
        )  # fmt: skip
        address = (head_dir / "ray_current_cluster").read_text().strip()
        groups.append(
            _ray_start(
                [f"--address={address}", f"--num-cpus={cpus_per_node}"],
                work / "ray-node",
                work / "ray-node.log",
                env,
            )
        )
        yield address
    finally:
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


def search_spec(trials: int, concurrent: int) -> tuple[dict, int]:
    """The quickstart as a random search of about `trials` trials (the baseline and as few
    training seeds as the nine tasks' 511 subsets allow); returns it and its trials."""
    spec = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
    seeds = math.ceil(trials / 512)
    configurations = math.ceil(trials / seeds)
    spec.update(
        name=EXPERIMENT,
        mlflow={"experiment": EXPERIMENT},
        subsets={"sampler": "random", "num_samples": configurations - 1, "baseline": True},
        seeds=seeds,
        max_concurrent_trials=concurrent,
    )
    spec["budget"] = {**spec["budget"], "report_every_steps": REPORT_EVERY_STEPS}
    return spec, configurations * seeds


def one_search(
    work: Path, trials: int, concurrent: int, address: str, profile: Path | None = None
) -> dict[str, float]:
    """One search of `trials` on the cluster at `address`, logging to a new MLflow server; its
    figures. `profile`: the file for a cProfile of Tune's loop in the driver."""
    from xlt_search.tracking import load_trials

    folder = work / f"search-{trials}"
    folder.mkdir()
    spec, trials = search_spec(trials, concurrent)
    server = MlflowServer(folder, dict(os.environ))
    try:
        server.start()
        run_search(spec, folder, "prepare", tracking_uri=server.uri)  # the data, apart
        timings_file = folder / "timings.json"
        _, wall_s, driver_cpu_s = run_search(
            spec,
            folder,
            tracking_uri=server.uri,
            driver=(__file__, "drive", str(timings_file), str(profile or "-")),
            options=("--address", address),
            env={"RAY_AUTH_MODE": "token"},
        )
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "xlt_search", "report", EXPERIMENT, "--out", str(folder)],
            cwd=folder,
            env={**os.environ, "MLFLOW_TRACKING_URI": server.uri},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        report_s = time.perf_counter() - started
        logged = load_trials(EXPERIMENT, server.uri)
    finally:
        if server.process is not None:
            server.stop()
    t = json.loads(timings_file.read_text())
    if len(logged) != trials:
        raise AssertionError(f"{len(logged)} trials in MLflow, {trials} planned")
    calls = [end - start for start, end, _, _ in t["calls"]]
    # An MLflow request completed inside a callback call: its operation was taken before the
    # call returned. Operations are delivered in order, so `applied[i]` is operation i's.
    waited = sum(
        any(i < len(t["applied"]) and t["applied"][i] <= end for i in range(first, last))
        for _, end, first, last in t["calls"]
    )
    behind_ops = max(i - bisect.bisect_right(t["applied"], put) for i, put in enumerate(t["puts"]))
    behind_s = max(applied - put for put, applied in zip(t["puts"], t["applied"], strict=False))
    last_op = max(last for _, _, _, last in t["calls"])
    fit = t["fit"]
    return {
        "trials": trials,
        "trials in MLflow": len(logged),
        "wall s": wall_s,
        "Tune's loop wall s": fit["end"] - fit["start"],
        "driver CPU s a trial": driver_cpu_s / trials,
        "Tune's loop CPU s a trial": (fit["cpu_end"] - fit["cpu_start"]) / trials,
        "MLflow callback calls": len(calls),
        "MLflow callback ms a trial": 1000 * sum(calls) / trials,
        "MLflow callback: longest call ms": 1000 * max(calls),
        "MLflow requests": len(t["request_s"]),
        "MLflow request: median ms": 1000 * statistics.median(t["request_s"]),
        "queue behind: most operations": behind_ops,
        "queue behind: longest wait s": behind_s,
        "MLflow after Tune's loop s": max(0.0, t["applied"][last_op - 1] - fit["end"]),
        "requests inside a callback call": waited,
        "report s": report_s,
    }


PER_TRIAL = (  # the figures whose growth with N is judged (per trial, or a time per request)
    "driver CPU s a trial",
    "Tune's loop CPU s a trial",
    "MLflow callback ms a trial",
    "MLflow request: median ms",
)


def print_table(rows: list[dict[str, float]]) -> None:
    width = max(len(name) for name in rows[0])
    for name in rows[0]:
        cells = []
        for row in rows:
            value = row[name]
            cells.append(f"{value:>10,.0f}" if float(value).is_integer() else f"{value:>10.3f}")
        print(f"{name:<{width}} | " + " | ".join(cells))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        scale = last["trials"] / first["trials"]
        print(f"\nfrom {first['trials']:,.0f} to {last['trials']:,.0f} trials ({scale:g}x):")
        for name in PER_TRIAL:
            print(f"  {name}: x{last[name] / first[name]:.2f}")
        for name in ("report s", "Tune's loop wall s"):
            print(
                f"  {name}: x{last[name] / first[name]:.2f} ({last[name] / first[name] / scale:.2f} of linear)"
            )
        faster = [n for n in PER_TRIAL if last[n] / first[n] > FASTER_THAN_LINEAR]
        faster += [n for n in ("report s",) if last[n] / first[n] > FASTER_THAN_LINEAR * scale]
        print(
            "faster than linear: "
            + (", ".join(faster) if faster else "nothing")
            + f" (a per-trial cost up more than {FASTER_THAN_LINEAR}x)"
        )
    last = rows[-1]
    print(
        f"goals at {last['trials']:,.0f} trials: driver CPU {last['driver CPU s a trial']:.3f} s a "
        f"trial (<= 0.2: {'met' if last['driver CPU s a trial'] <= 0.2 else 'not met'}); "
        f"report {last['report s']:.1f} s (< 60: {'met' if last['report s'] < 60 else 'not met'}); "
        f"a trial waited on MLflow: {'never' if not last['requests inside a callback call'] else 'yes'}"
    )


def main() -> None:
    if sys.argv[1:2] == ["drive"]:
        sys.exit(drive(sys.argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--scaling", action="store_true", help="also N/4 and N/2 trials")
    parser.add_argument("--concurrent", type=int, default=8, help="trials at once")
    parser.add_argument("--cpus-per-node", type=int, default=4, help="Ray's logical CPUs")
    parser.add_argument(
        "--profile", type=Path, help="write a cProfile of Tune's loop (the largest search's)"
    )
    parser.add_argument(
        "--keep", type=Path, help="a new folder (short path) to keep the stores and logs in"
    )
    args = parser.parse_args()
    sizes = [args.trials // 4, args.trials // 2, args.trials] if args.scaling else [args.trials]
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # Short: Ray's socket paths under its temp dir may not exceed 107 bytes.
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True)
            work = args.keep.resolve()
        else:
            work = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="xlt-orch-", dir="/tmp"))
            )
        isolate(work)
        # The trials import this checkout's package, as the driver does.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
        )
        # Trial workers at nice 0, not Ray's 15: on a machine shared with other work they
        # would otherwise wait behind it, and the driver with them (docs: NOTES on niceness).
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_worker_niceness": "0"}
        with two_node_cluster(work, args.cpus_per_node, env) as address:
            print(f"cluster: 2 nodes at {address}, {args.cpus_per_node} CPUs each")
            rows = [
                one_search(
                    work, n, args.concurrent, address, args.profile if n == sizes[-1] else None
                )
                for n in sizes
            ]
    print_table(rows)


if __name__ == "__main__":
    main()
