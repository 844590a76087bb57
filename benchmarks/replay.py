"""Samplers replayed on an exhaustive table: how many trials each needs to find the best subset,
and how well it ranks the tasks by then.

    python benchmarks/exhaustive_table.py --pool-size 6     # writes the table first
    python benchmarks/replay.py benchmarks/tables/exhaustive_6.csv --replays 50
    python benchmarks/replay.py --planted 9 --replays 50     # a landscape with a known answer
    python benchmarks/replay.py --planted 9 --flat           # one with nothing to find

Each replay is one search of the pool's non-empty subsets by one sampler (random, stratified,
optuna TPE, guided), seeded by the replay's number, that trains a subset by reading the table: a
trial's score is one of the table's training seeds, drawn at random, so seed noise is in the
replay as it is in a search. With `fifo` every trial runs its whole budget; with `asha` each is
cut at the table's first report (the quickstart's rung) unless it is among its size's first
`--survivors` there or in the top 1/`--reduction` of its size's rung scores so far, the rule of
the search's size-stratified ASHA. The sampler sees each trial's last report (guided: at its share
of the budget). It prints, per sampler and scheduler, over the replays (median [interquartile
range]): the trials and budget_steps until a trial completed whose subset's mean over seeds is
within `--within` (0.005: half a point) of the table's best non-empty subset; the regret (that
best minus the best such mean completed so far) after 10, 20 and 40 trials; the Spearman
correlation of the report's Shapley estimate (KernelSHAP over the completed trials so far; for
guided also its surrogate's) with the table's exact Shapley values after 20 and 40 trials.

Before them it says what the table's own seeds can resolve: how many subsets lie within the noise
of the best, and how well one seed's exact Shapley values predict another's (the ceiling of any
estimate's Spearman), with a warning where the noise leaves the best subset or the ranking open.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from xlt_search import subsets
from xlt_search.analysis.contributions import additive_effects, shapley_weights
from xlt_search.guided import GuidedProposer

CHECKPOINTS = (10, 20, 40)


class Table:
    """The exhaustive table: each subset's reports per training seed."""

    def __init__(self, reports: dict[tuple, dict[int, dict[int, float]]]) -> None:
        self.reports = {s: dict(by_seed) for s, by_seed in reports.items()}
        self.pool = tuple(sorted(set().union(*self.reports)))
        self.mean = {
            s: float(np.mean([r[max(r)] for r in by_seed.values()]))
            for s, by_seed in self.reports.items()
        }
        candidates = [s for s in self.mean if s]
        self.best = max(self.mean[s] for s in candidates)
        self.budget = max(max(r) for by_seed in self.reports.values() for r in by_seed.values())
        self.rung = min(
            min(r) for s, by_seed in self.reports.items() if s for r in by_seed.values()
        )
        self.shapley = self._shapley(self.mean)

    @classmethod
    def read(cls, paths: list[Path]) -> Table:
        """The table exhaustive_table.py wrote, whole or in shards (one file per seed or seeds)."""
        reports: dict[tuple, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        for path in paths:
            with path.open() as handle:
                for row in csv.DictReader(handle):
                    chosen = subsets.parse_subset_key(row["tasks"])
                    steps, score = int(row["budget_steps"]), float(row["score"])
                    reports[chosen][int(row["seed"])][steps] = score
        return cls(reports)

    @classmethod
    def planted(
        cls, n_tasks: int, scale: float = 1.0, noise_sd: float = 0.005, seed: int = 0
    ) -> Table:
        """A landscape with a known answer: main effects evenly from +0.04 to -0.04, t0 and t1 in
        conflict (-0.05 together), all times `scale` (0: nothing to find but the noise),
        `noise_sd` between two training seeds; its rung (800 of 1200 budget_steps) 0.05 below
        the whole budget."""
        pool = [f"t{i}" for i in range(n_tasks)]
        effects = dict(zip(pool, np.linspace(0.04, -0.04, n_tasks) * scale, strict=True))
        rng = np.random.default_rng(seed)
        reports: dict[tuple, dict[int, dict[int, float]]] = {}
        for k in range(n_tasks + 1):
            for chosen in itertools.combinations(pool, k):
                conflict = 0.05 * scale * ({"t0", "t1"} <= set(chosen))
                truth = 0.6 + sum(effects[t] for t in chosen) - conflict
                reports[chosen] = {
                    s: {
                        800: truth - 0.05 + rng.normal(0, noise_sd),
                        1200: truth + rng.normal(0, noise_sd),
                    }
                    for s in (0, 1)
                }
        return cls(reports)

    def _shapley(self, mean: dict[tuple, float]) -> dict[str, float]:
        """Each task's exact Shapley value of `mean` (a score per subset; the baseline's as no
        task's value)."""
        n, values = len(self.pool), {}
        for task in self.pool:
            others = [t for t in self.pool if t != task]
            values[task] = sum(
                math.factorial(k)
                * math.factorial(n - k - 1)
                / math.factorial(n)
                * (mean[tuple(sorted((*s, task)))] - mean[s])
                for k in range(n)
                for s in itertools.combinations(others, k)
            )
        return values

    def seed_sd(self) -> float:
        """The seed-to-seed standard deviation of the final scores, pooled over subsets."""
        spread = [
            np.var([r[max(r)] for r in by_seed.values()], ddof=1)
            for by_seed in self.reports.values()
            if len(by_seed) > 1
        ]
        return float(np.sqrt(np.mean(spread))) if spread else math.nan

    def resolution(self) -> str:
        """What the table's own seeds can tell apart: the margin a difference of two subsets'
        means must pass (twice its standard error), how many subsets lie within it of the best,
        and how well two seeds' exact Shapley values agree (the most any estimate's Spearman can
        mean); with a warning for each that the noise leaves unresolved."""
        seeds = sorted(set.intersection(*(set(by_seed) for by_seed in self.reports.values())))
        if len(seeds) < 2:
            return "resolution: unknown (one training seed: no noise floor)"
        noise = 2 * self.seed_sd() * math.sqrt(2 / len(seeds))
        tied = sum(1 for s, m in self.mean.items() if s and m >= self.best - noise)
        alone = [
            self._shapley({s: r[seed][max(r[seed])] for s, r in self.reports.items()})
            for seed in seeds[:2]
        ]
        rho = spearmanr([alone[0][t] for t in self.pool], [alone[1][t] for t in self.pool])[0]
        lines = [
            f"resolution: two subsets' means differ beyond the noise past {noise:.4f} (2 x sd x "
            f"sqrt(2/{len(seeds)})); {tied} non-empty subset(s) lie within it of the best; the "
            f"exact Shapley values of seed {seeds[0]} alone and seed {seeds[1]} alone agree at "
            f"Spearman {rho:.2f}"
        ]
        if tied > 1:
            lines.append(
                f"warning: the best subset is not resolved: {tied} subsets are within the noise "
                "of it, so 'trials to best' measures luck at this margin"
            )
        if not rho >= 0.5:  # nan too: every value alike
            lines.append(
                "warning: the task ranking is not resolved: one seed's exact Shapley values "
                f"predict the other's at Spearman {rho:.2f}, so rho against them ranks noise"
            )
        return "\n".join(lines)


def order(sampler: str, pool: tuple[str, ...], sizes: tuple[int, ...], seed: int) -> list[tuple]:
    """A planned sampler's subsets in the order its search would run them."""
    space = subsets.count(len(pool), sizes)
    if sampler == "random":
        chosen = subsets.random_subsets(pool, sizes, space, seed)
        random.Random(seed).shuffle(chosen)  # as the tuner shuffles a plan's subsets
        return chosen
    by_size = defaultdict(list)  # stratified: round-robin over the sizes, each balanced
    for s in subsets.stratified(pool, sizes, max(math.comb(len(pool), k) for k in sizes), seed):
        by_size[len(s)].append(s)
    for group in by_size.values():
        random.Random(seed).shuffle(group)
    rounds = itertools.zip_longest(*by_size.values())
    return [s for r in rounds for s in r if s is not None]


class Optuna:
    """TPE over one boolean per task, a pick repaired to an allowed size, as the search's."""

    def __init__(self, pool: tuple[str, ...], sizes: tuple[int, ...], seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.pool, self.sizes, self.rng = pool, sizes, random.Random(seed)
        self.study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        self.asked: list = []

    def propose(self) -> tuple[str, ...]:
        trial = self.study.ask()
        flags = {
            subsets.flag_name(t): trial.suggest_categorical(subsets.flag_name(t), [True, False])
            for t in self.pool
        }
        self.asked.append(trial)
        return subsets.repair(flags, self.pool, self.sizes, self.rng)

    def observe(self, subset: tuple[str, ...], share: float, score: float) -> None:
        self.study.tell(self.asked.pop(0), score)


class Planned:
    """A sampler whose subsets are fixed before the search (random, stratified)."""

    def __init__(self, chosen: list[tuple]) -> None:
        self.chosen = iter(chosen)

    def propose(self) -> tuple[str, ...]:
        return next(self.chosen)

    def observe(self, subset: tuple[str, ...], share: float, score: float) -> None:
        pass


class Guided:
    """The guided sampler's proposer, as its Tune searcher drives it."""

    def __init__(self, pool: tuple[str, ...], sizes: tuple[int, ...], seed: int) -> None:
        self.proposer = GuidedProposer(pool, sizes, seed)

    def propose(self) -> tuple[str, ...]:
        return self.proposer.propose()[0]

    def observe(self, subset: tuple[str, ...], share: float, score: float) -> None:
        self.proposer.observe(subset, share, score)


def replay(table: Table, sampler: str, scheduler: str, seed: int, args) -> dict:
    """One search of `sampler` on the table; what it found, when, and its rankings."""
    pool, sizes = table.pool, tuple(range(1, len(table.pool) + 1))
    space = subsets.count(len(pool), sizes)
    if sampler == "optuna":
        searcher = Optuna(pool, sizes, seed)
    elif sampler == "guided":
        searcher = Guided(pool, sizes, seed)
    else:
        searcher = Planned(order(sampler, pool, sizes, seed))
    rng = np.random.default_rng(seed)
    rung_scores: dict[int, list[float]] = defaultdict(list)
    completed, steps, best_so_far = [], 0, -math.inf
    found = found_steps = None
    regret, rho, rho_surrogate = {}, {}, {}
    for trial in range(1, min(space, args.max_trials) + 1):
        chosen = searcher.propose()
        by_seed = table.reports[chosen]
        reports = by_seed[sorted(by_seed)[int(rng.integers(len(by_seed)))]]
        rung = reports[table.rung]
        at_rung = rung_scores[len(chosen)]
        at_rung.append(rung)
        cut = scheduler == "asha" and len(at_rung) > args.survivors
        cut = cut and rung < np.quantile(at_rung, 1 - 1 / args.reduction)
        last = table.rung if cut else max(reports)
        steps += last
        searcher.observe(chosen, last / table.budget, reports[last])
        if not cut:
            completed.append((chosen, reports[last]))
            best_so_far = max(best_so_far, table.mean[chosen])
            if found is None and table.mean[chosen] >= table.best - args.within:
                found, found_steps = trial, steps
        if trial in CHECKPOINTS:
            regret[trial] = table.best - best_so_far
            rho[trial] = ranking(table, completed)
            if sampler == "guided":
                effects = {e.task: e.mean for e in searcher.proposer.effects()}
                rho_surrogate[trial] = correlation(table, effects)
        if found is not None and trial >= max(CHECKPOINTS):
            break  # nothing more to measure
    return {
        "found": found,
        "found_steps": found_steps,
        "regret": regret,
        "rho": rho,
        "rho_surrogate": rho_surrogate,
    }


def ranking(table: Table, completed: list[tuple]) -> float:
    """Spearman of the report's KernelSHAP estimate from `completed` with the exact values."""
    if len(completed) < len(table.pool) + 1:
        return math.nan  # the report refuses a fit with fewer trials than unknowns + 1
    flags = np.array([[t in s for t in table.pool] for s, _ in completed], dtype=float)
    scores = np.array([score for _, score in completed])
    estimate = additive_effects(flags, scores, shapley_weights(flags))
    return correlation(table, dict(zip(table.pool, estimate, strict=True)))


def correlation(table: Table, estimate: dict[str, float]) -> float:
    return float(
        spearmanr([estimate[t] for t in table.pool], [table.shapley[t] for t in table.pool])[0]
    )


def confirm(table: Table, experiment: str, within: float) -> str:
    """When a real search (at $MLFLOW_TRACKING_URI) first completed a trial of a subset within
    `within` of the table's best, its trials taken in the order they started."""
    from xlt_search.tracking import load_trials

    trials = load_trials(experiment).sort_values("start_time").reset_index(drop=True)
    for index, trial in trials.iterrows():
        chosen = subsets.parse_subset_key(trial["tasks"])
        if trial["status"] == "completed" and table.mean[chosen] >= table.best - within:
            return (
                f"the real search {experiment}: trial {index + 1} of {len(trials)} "
                f"({trial['tasks']}, its table mean {table.mean[chosen]:.4f}, its own score "
                f"{trial['score']:.4f}) is the first completed within {within} of the best"
            )
    return f"the real search {experiment}: none of its {len(trials)} trials within {within}"


def summary(values: list[float | None]) -> str:
    """Median [interquartile range] of the values that are there, and how many are missing."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    missing = len(values) - len(present)
    if not present:
        return "-"
    q1, q2, q3 = np.percentile(present, [25, 50, 75])
    text = f"{q2:.3g} [{q1:.3g}, {q3:.3g}]"
    return text + (f" ({missing} never)" if missing else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "table", type=Path, nargs="*", help="exhaustive_table.py's CSV (or its shards' CSVs)"
    )
    parser.add_argument("--planted", type=int, help="replay a planted landscape of N tasks instead")
    parser.add_argument(
        "--flat", action="store_true", help="the planted landscape with nothing to find"
    )
    parser.add_argument("--replays", type=int, default=50)
    parser.add_argument("--within", type=float, default=0.005)
    parser.add_argument("--max-trials", type=int, default=10_000)
    parser.add_argument("--survivors", type=int, default=2, help="ASHA: per size, at the rung")
    parser.add_argument("--reduction", type=int, default=3, help="ASHA's reduction factor")
    parser.add_argument("--samplers", default="random,stratified,optuna,guided")
    parser.add_argument(
        "--search", help="also a real search of the table's pool: its MLflow experiment"
    )
    args = parser.parse_args()

    if bool(args.table) == (args.planted is not None):
        parser.error("give a table or --planted N")
    if args.table:
        table = Table.read(args.table)
    else:
        table = Table.planted(args.planted, scale=0.0 if args.flat else 1.0)
    near = sum(1 for s, m in table.mean.items() if s and m >= table.best - args.within)
    source = " + ".join(map(str, args.table)) or "planted"
    print(
        f"table {source}: {len(table.pool)} tasks, {len(table.mean)} subsets; "
        f"best non-empty {table.best:.4f}, {near} subset(s) within {args.within}; baseline "
        f"{table.mean.get((), math.nan):.4f}; seed-to-seed sd {table.seed_sd():.4f}; "
        f"budget {table.budget} budget_steps, rung {table.rung}"
    )
    print(table.resolution())
    header = ["sampler", "scheduler", "trials to best", "steps to best"]
    header += [f"regret@{n}" for n in CHECKPOINTS] + ["rho@20", "rho@40", "surrogate rho@40"]
    print("  |  ".join(header))
    medians = {}
    for sampler in args.samplers.split(","):
        for scheduler in ("fifo", "asha"):
            runs = [replay(table, sampler, scheduler, seed, args) for seed in range(args.replays)]
            medians[sampler, scheduler] = np.median(
                [r["found"] if r["found"] is not None else math.inf for r in runs]
            )
            cells = [sampler, scheduler, summary([r["found"] for r in runs])]
            cells.append(summary([r["found_steps"] for r in runs]))
            cells += [summary([r["regret"].get(n) for r in runs]) for n in CHECKPOINTS]
            cells += [summary([r["rho"].get(n) for r in runs]) for n in (20, 40)]
            cells.append(summary([r["rho_surrogate"].get(40) for r in runs]))
            print("  |  ".join(cells))
    if args.search:
        print(confirm(table, args.search, args.within))
    for scheduler in ("fifo", "asha"):
        if ("guided", scheduler) in medians and ("random", scheduler) in medians:
            ratio = medians["guided", scheduler] / medians["random", scheduler]
            print(f"{scheduler}: guided's median trials to the best / random's: {ratio:.2f}")


if __name__ == "__main__":
    main()
