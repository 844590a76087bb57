"""What tokenizing once costs: `prepare_data` into an empty cache, then again (a second search).

    python benchmarks/data_prep.py --spec search_spaces/quickstart.yaml --warm-runs 3 --profile 15

Prepares every split the spec's search reads (`required_splits` over its pool and targets, with its
sequence length, caps and seed, as `xlt-search run` does) into an empty cache folder, with datasets'
cache of the raw files empty too (a first search on a fresh machine); then `--warm-runs` times into
the same folder (a second search: every split is found by its fingerprint); then into another empty
folder with datasets' raw cache warm (a first search once the raw files have been read before).
Prints each run's seconds, the second search's median as a share of each first search (the goal is
5% at most) and, with `--profile N`, the N functions a second search spends the most time in.
Generating the synthetic suite, a first use's cost outside `prepare_data`, is timed on its own row.
Everything is written under a temporary folder.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import isolate

from xlt_search.data import PreparedData, prepare_data
from xlt_search.search import target_configs
from xlt_search.spec import SearchSpec, load_spec
from xlt_search.synthetic import resolve_model
from xlt_search.trial import required_splits


def preparer(spec: SearchSpec, model: str) -> Callable[[Path], PreparedData]:
    """`prepare_data` with the spec's settings, into the folder it is given."""
    requests = required_splits(spec.pool, target_configs(spec), spec.registry)

    def prepare(cache_dir: Path) -> PreparedData:
        return prepare_data(
            requests,
            tokenizer=model,
            max_seq_length=spec.data.max_seq_length,
            max_train_examples=spec.data.max_train_examples,
            max_train_examples_per_task=spec.data.max_train_examples_per_task,
            cache_dir=cache_dir,
            seed=spec.seed,
            registry=spec.registry,
            languages=spec.known_languages,
            mirror=spec.data.mirror,
        )

    return prepare


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="search_spaces/quickstart.yaml")
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile a warm run")
    args = parser.parse_args()
    if args.warm_runs < 1:
        parser.error("--warm-runs must be at least 1")
    spec = load_spec(args.spec)

    with tempfile.TemporaryDirectory(prefix="data-prep-") as folder:
        work = Path(folder)
        isolate(work)
        started = time.perf_counter()
        model = resolve_model(spec.model)
        suite = time.perf_counter() - started
        prepare = preparer(spec, model)

        first = timed(lambda: prepare(work / "cache"))
        warm = [timed(lambda: prepare(work / "cache")) for _ in range(args.warm_runs)]
        first_raw_warm = timed(lambda: prepare(work / "another-cache"))
        splits = len(prepare(work / "cache").splits)

        print(f"{spec.name}: {splits} splits, max_seq_length {spec.data.max_seq_length}")
        print("run | seconds")
        print(f"generating the synthetic suite (first use, outside prepare_data) | {suite:.2f}")
        print(f"first search: empty cache, datasets' raw cache empty | {first:.2f}")
        for number, seconds in enumerate(warm, 1):
            print(f"second search, run {number}: same cache | {seconds:.3f}")
        print(f"first search: empty cache, datasets' raw cache warm | {first_raw_warm:.2f}")
        median = statistics.median(warm)
        print(
            f"second/first: {median / first:.1%} of a first search on a fresh machine, "
            f"{median / first_raw_warm:.1%} with datasets' raw cache warm (goal: 5% at most)"
        )

        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(prepare, work / "cache")
            print(f"\na second search's prepare_data, the {args.profile} costliest calls:")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
