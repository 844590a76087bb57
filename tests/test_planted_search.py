"""Real searches recover the synthetic suite's planted effects of translated intermediate data and
of RS-DA: through the CLI (real Ray, a SQLite MLflow store), read from the report's grid.csv.

The trial-level known answers are tests/test_translated.py and tests/test_rsda.py; here a search
runs the grid, pairs each trial with its twin at the grid's first value, and its interval must
say the same. Each search takes 3-5 minutes on 2 busy CPU cores.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from processes import run_cli
from search_specs import search_spec, write_spec

HELPFUL = ["syn_pole_tags", "syn_sentiment", "syn_topic_choice"]  # planted helpful to both targets


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for both searches: the suite is generated once, in this folder."""
    return tmp_path_factory.mktemp("xlt_cache")


def grid_rows(work: Path, cache: Path, raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run the search `raw` through the CLI in `work`; its grid.csv's rows by metric, numbers
    read as floats."""
    uri = f"sqlite:///{work / 'mlflow.db'}"
    result = run_cli(
        "run",
        str(write_spec(work, raw)),
        cwd=work,
        env={"MLFLOW_TRACKING_URI": uri, "XLT_SEARCH_CACHE": str(cache)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = next((work / "runs").glob(f"{raw['name']}-*/report"))
    with (report / "grid.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    numbers = ("difference", "ci_low", "ci_high")
    return {r["metric"]: {**r, **{n: float(r[n]) for n in numbers}} for r in rows}


@pytest.mark.e2e
def test_a_search_finds_translated_data_helps_the_far_family_only(
    tmp_path: Path, cache: Path
) -> None:
    raw = search_spec(
        "translated",
        tmp_path,
        pool=HELPFUL,
        # every pair of helpful tasks; no baseline, which trains no intermediate task in any
        # language and so has the same twin at both values
        subsets={"sampler": "grid", "sizes": [2], "baseline": False},
        hyperparameters={
            "learning_rate": 1.0e-3,
            "per_device_batch_size": 32,
            "intermediate_languages": {"grid": ["en", "en+xf1+xf2"]},
        },
        budget={  # the budget of tests/test_translated.py's known answer
            "intermediate_steps": 200,
            "target_steps": 200,
            "report_every_steps": 600,
            "probe_steps": 0,
            "scheduler": "fifo",
        },
        seed=0,
    )
    rows = grid_rows(tmp_path, cache, raw)
    assert {r["pairs"] for r in rows.values()} == {"3"}, rows  # 6 trials, all completed
    # Measured, difference [95% interval] over the 3 pairs, seeds 0, 1 and 2 of the search:
    # far family +0.26 [+0.12, +0.41], +0.30 [+0.18, +0.42], +0.30 [+0.05, +0.54]: the
    # translations teach the far languages' own words, which English training never shows;
    # close family -0.04 [-0.12, +0.04], -0.02 [-0.03, -0.01], -0.02 [-0.11, +0.08]: its words are
    # English's, so the translations teach it nothing, and at seed 1 the English steps they take
    # cost it a little. With 3 pairs the intervals are wide: the two families' can overlap.
    far, close = rows["family.synthetic-far"], rows["family.synthetic-close"]
    assert far["verdict"] == "en+xf1+xf2 beats en" and far["difference"] > 0.15, far
    assert close["verdict"] != "en+xf1+xf2 beats en" and abs(close["difference"]) < 0.05, close


@pytest.mark.e2e
def test_a_search_finds_rs_da_helps_where_words_are_swapped_for_synonyms(
    tmp_path: Path, cache: Path
) -> None:
    from xlt_search.synthetic import ensure_suite, synonyms_file

    raw = search_spec(
        "rsda",
        tmp_path,
        # the baseline (tests/test_rsda.py's known answer trains no intermediate task) and one
        # neutral task, so the gain is shown on two subsets
        pool=["syn_kind"],
        subsets={"sampler": "grid", "sizes": [1], "baseline": True},
        targets=[{"task": "syn_synonyms"}, {"task": "syn_polarity"}],
        hyperparameters={
            "learning_rate": 5.0e-4,
            "per_device_batch_size": 32,
            "robust_training": {"grid": ["none", "rs_da"]},
            "robust_copies": 3,
        },
        budget={
            "intermediate_steps": 100,
            "target_steps": 200,
            "report_every_steps": 500,
            "probe_steps": 0,
            "scheduler": "fifo",
        },
        seed=0,
        seeds=2,
        data={
            "max_seq_length": 32,
            "max_train_examples": 1000,
            "synonyms": str(synonyms_file(ensure_suite(cache))),
        },
    )
    rows = grid_rows(tmp_path, cache, raw)
    assert {r["pairs"] for r in rows.values()} == {"4"}, rows  # 8 trials, all completed
    # Measured, difference [95% interval] over the 4 pairs, seeds 0 and 1 of the search:
    # syn_synonyms +0.23 [+0.20, +0.26] and +0.25 [+0.22, +0.28]: its evaluation swaps English's words for
    # synonyms no training shows but rs_da's copies;
    # syn_polarity -0.02 [-0.04, +0.01] and +0.00 [-0.02, +0.02]: the same examples, nothing swapped.
    synonyms, polarity = rows["score.syn_synonyms"], rows["score.syn_polarity"]
    assert synonyms["verdict"] == "rs_da beats none" and synonyms["ci_low"] > 0.1, synonyms
    assert polarity["verdict"] == "cannot tell" and abs(polarity["difference"]) < 0.05, polarity
