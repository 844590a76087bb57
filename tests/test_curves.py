"""Scaling curves: statistics over completed trials, the baseline, bootstrap intervals over
configurations and seeds, seed variance, the text table, the CSV and the PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlt_search.analysis import curves


def trials_table() -> pd.DataFrame:
    rows = [  # (tasks, status, score, score.nli)
        ("", "completed", 0.40, 0.30),  # the baseline
        ("a", "completed", 0.50, 0.40),
        ("b", "completed", 0.70, 0.60),
        ("c", "early_stopped", 0.95, 0.90),  # a cut trial's probe score must not count
        ("a+b", "completed", 0.60, 0.50),
        ("a+c", "errored", math.nan, math.nan),
        ("a+b+c", "early_stopped", 0.40, 0.30),
    ]
    table = pd.DataFrame(rows, columns=["tasks", "status", "score", "score.nli"])
    table["n_tasks"] = [len(t.split("+")) if t else 0 for t in table["tasks"]]
    table["learning_rate"] = 0.001
    return table


def test_statistics_use_completed_trials_only_and_gains_are_over_the_baseline() -> None:
    curve = curves.scaling_curve(trials_table())
    assert list(curve.columns) == list(curves.CURVE_COLUMNS)
    assert curve["n_tasks"].tolist() == [0, 1, 2, 3]
    assert curve["trials"].tolist() == [1, 3, 2, 1]
    assert curve["completed"].tolist() == [1, 2, 1, 0]
    assert curve["early_stopped"].tolist() == [0, 1, 0, 1]
    baseline, one, two, three = curve.to_dict("records")
    assert baseline["mean"] == 0.40 and math.isnan(baseline["gain"]) is False
    assert one["best"] == 0.70 and one["mean"] == pytest.approx(0.60)
    assert one["std"] == pytest.approx(math.sqrt(0.02))  # sample std of 0.5 and 0.7
    assert one["gain"] == pytest.approx(0.20)
    assert two["best"] == two["mean"] == 0.60 and math.isnan(two["std"])
    assert all(math.isnan(three[c]) for c in ("best", "mean", "std", "ci_low", "gain"))


def test_sizes_asked_for_get_rows_even_without_trials() -> None:
    curve = curves.scaling_curve(trials_table(), sizes=range(1, 10))
    assert curve["n_tasks"].tolist() == list(range(0, 10))  # the baseline comes first
    empty = curve[curve["n_tasks"] == 5].iloc[0]
    assert empty["trials"] == 0 and empty["completed"] == 0 and math.isnan(empty["mean"])


def test_the_interval_brackets_the_mean_and_narrows_with_more_trials() -> None:
    rng = np.random.default_rng(0)

    def curve_of(n: int) -> pd.Series:
        table = pd.DataFrame(
            {
                "tasks": [f"t{i}" for i in range(n)],
                "n_tasks": 1,
                "status": "completed",
                "score": 0.5 + rng.normal(0, 0.05, n),
            }
        )
        return curves.scaling_curve(table).iloc[0]

    few, many = curve_of(5), curve_of(80)
    for row in (few, many):
        assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert many["ci_high"] - many["ci_low"] < few["ci_high"] - few["ci_low"]
    # about mean +- 1.96 standard errors for the large sample
    half = 1.96 * many["std"] / math.sqrt(80)
    assert many["ci_high"] - many["ci_low"] == pytest.approx(2 * half, rel=0.25)


def test_seeds_are_resampled_within_their_configuration() -> None:
    # two configurations, three seeds each: one interval from both levels of the bootstrap
    table = pd.DataFrame(
        {
            "tasks": ["a"] * 3 + ["b"] * 3,
            "n_tasks": 1,
            "status": "completed",
            "seed": [0, 1, 2] * 2,
            "learning_rate": 0.001,
            "score": [0.50, 0.52, 0.54, 0.70, 0.72, 0.74],
        }
    )
    row = curves.scaling_curve(table).iloc[0]
    assert row["best"] == pytest.approx(0.72)  # the best configuration's seed mean
    assert 0.50 <= row["ci_low"] < row["mean"] < row["ci_high"] <= 0.74
    # with configurations fixed, the interval would be the seeds' alone: far narrower
    assert row["ci_high"] - row["ci_low"] > 0.1
    variance = curves.seed_variance(table)
    assert variance["seeds"].tolist() == [3, 3]
    assert variance["std"].tolist() == pytest.approx([0.02, 0.02])
    assert curves.pooled_seed_std(variance) == pytest.approx(0.02)


def test_a_gain_is_beyond_seed_noise_only_when_it_is_large_against_it() -> None:
    curve = pd.DataFrame(
        {
            "n_tasks": [0, 1, 2],
            "completed": [4, 4, 4],
            "gain": [0.0, 0.05, 0.01],
        }
    )
    # standard error 0.02 * sqrt(1/4 + 1/4) = 0.0141: 0.05 is beyond twice it, 0.01 is not
    assert curves.beyond_seed_noise(curve, 0.02).tolist() == [False, True, False]
    assert curves.beyond_seed_noise(curve, math.nan).tolist() == [False, False, False]


def test_an_empty_search_gives_an_empty_curve() -> None:
    empty = pd.DataFrame({"tasks": [], "n_tasks": [], "status": [], "score": []})
    curve = curves.scaling_curve(empty)
    assert curve.empty and list(curve.columns) == list(curves.CURVE_COLUMNS)


def test_a_table_without_the_needed_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks the column.*status"):
        curves.scaling_curve(pd.DataFrame({"tasks": ["a"], "n_tasks": [1], "score": [0.5]}))


def test_curve_metrics_are_the_average_then_targets_then_families() -> None:
    table = trials_table().assign(**{"family.far": 0.1, "family.close": 0.2, "score.copa": 0.3})
    assert curves.curve_metrics(table) == [
        "score",
        "score.copa",
        "score.nli",
        "family.close",
        "family.far",
    ]


def test_format_table_aligns_columns_and_marks_missing_values() -> None:
    text = curves.format_table(curves.scaling_curve(trials_table()))
    lines = text.splitlines()
    assert lines[0].split() == [c for c in curves.CURVE_COLUMNS if c != "curve"]
    assert lines[1].split()[:3] == ["0", "(baseline)", "1"]
    assert lines[4].split() == ["3", "1", "0", "1", "-", "-", "-", "-", "-", "-"]
    assert len({len(line) for line in lines}) == 1


def test_write_curves_writes_every_curve_as_csv_and_a_png(tmp_path: Path) -> None:
    trials = trials_table()
    table = curves.scaling_curves(trials, sizes=range(1, 4))
    csv_path, png_path = curves.write_curves(table, trials, tmp_path / "out" / "deep", "qs")
    assert (csv_path.name, png_path.name) == ("scaling_curve.csv", "scaling_curve.png")
    written = pd.read_csv(csv_path)
    assert list(written.columns) == list(curves.CURVE_COLUMNS)
    assert written["curve"].unique().tolist() == ["score", "score.nli"]
    assert written[written["curve"] == "score.nli"]["mean"].tolist()[:2] == [0.30, 0.50]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_curves_draws_a_search_with_nothing_completed(tmp_path: Path) -> None:
    trials = pd.DataFrame(
        {"tasks": ["a"], "n_tasks": [1], "status": ["errored"], "score": [math.nan]}
    )
    _, png_path = curves.write_curves(curves.scaling_curves(trials), trials, tmp_path, "none")
    assert png_path.stat().st_size > 0
