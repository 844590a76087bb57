"""A grid hyperparameter read value against value: a planted gain of one value over the reference
is found on the same subsets and seeds, no gain says it cannot tell, and one pair gives no
interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from xlt_search import subsets
from xlt_search.analysis.grid import grid_table, section
from xlt_search.spec import parse_spec

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
POOL = ("syn_sentiment", "syn_kind", "syn_stance")


def spec_with_grid() -> object:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["hyperparameters"] = {"robust_training": {"grid": ["none", "adversarial"]}}
    return parse_spec(raw)


def trials(gain: float, seeds: int = 3, noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """Every subset of POOL at both values and every seed; `adversarial` adds `gain`."""
    rng = np.random.default_rng(seed)
    rows = []
    for subset in [(), *subsets.grid(POOL, range(1, len(POOL) + 1))]:
        quality = 0.5 + 0.02 * len(subset)
        for s in range(seeds):
            for kind in ("none", "adversarial"):
                score = quality + (gain if kind == "adversarial" else 0) + rng.normal(0, noise)
                rows.append(
                    {
                        **subsets.subset_params(subset, POOL),
                        "seed": s,
                        "status": "completed",
                        "robust_training": kind,
                        "score": score,
                        "score.syn_nli": score,
                    }
                )
    return pd.DataFrame(rows)


def row(table: pd.DataFrame, metric: str = "score") -> pd.Series:
    (found,) = table[table["metric"] == metric].itertuples()
    return found


def test_a_planted_gain_over_the_reference_is_found_pair_by_pair() -> None:
    table = grid_table(spec_with_grid(), trials(gain=0.03))
    found = row(table)
    assert (found.value, found.reference, found.pairs) == ("adversarial", "none", 8 * 3)
    assert abs(found.difference - 0.03) < 0.01 and found.ci_low > 0
    assert found.verdict == "adversarial beats none"
    assert set(table["metric"]) == {"score", "score.syn_nli"}
    assert any("adversarial - none" in line for line in section(table))


def test_no_gain_cannot_tell_and_one_pair_has_no_interval() -> None:
    told = sum(
        row(grid_table(spec_with_grid(), trials(gain=0.0, seed=s))).verdict != "cannot tell"
        for s in range(10)
    )
    assert told <= 2  # 95% intervals
    single = trials(gain=0.03, seeds=1).query("n_tasks == 0")
    found = row(grid_table(spec_with_grid(), single))
    assert found.pairs == 1 and found.verdict.startswith("one pair: adversarial above none")


def test_a_search_without_a_grid_has_no_table() -> None:
    raw = yaml.safe_load(QUICKSTART.read_text())
    assert grid_table(parse_spec(raw), trials(gain=0.03)).empty
    assert section(grid_table(parse_spec(raw), trials(gain=0.03))) == []
