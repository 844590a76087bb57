"""The scaling curve: statistics over completed trials, the text table, the CSV and the PNG."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest

from xlt_search import curves


def trials_table() -> pd.DataFrame:
    rows = [  # (n_tasks, status, score)
        (1, "completed", 0.50),
        (1, "completed", 0.70),
        (1, "early_stopped", 0.95),  # a cut trial's probe score must not count
        (2, "completed", 0.60),
        (2, "errored", math.nan),
        (3, "early_stopped", 0.40),
        (9, "completed", 0.80),
        (9, "completed", 0.90),
        (9, "completed", 0.85),
    ]
    return pd.DataFrame(rows, columns=["n_tasks", "status", "score"]).assign(
        tasks=lambda t: [f"k{k}" for k in t["n_tasks"]]
    )


def test_statistics_use_completed_trials_only() -> None:
    curve = curves.scaling_curve(trials_table())
    assert list(curve.columns) == list(curves.CURVE_COLUMNS)
    assert curve["n_tasks"].tolist() == [1, 2, 3, 9]
    assert curve["trials"].tolist() == [3, 2, 1, 3]
    assert curve["completed"].tolist() == [2, 1, 0, 3]
    one, two, three, nine = curve.to_dict("records")
    assert one["best"] == 0.70 and one["mean"] == pytest.approx(0.60)
    assert one["std"] == pytest.approx(math.sqrt(0.02))  # sample std of 0.5 and 0.7
    assert two["best"] == two["mean"] == 0.60 and math.isnan(two["std"])
    assert all(math.isnan(three[c]) for c in ("best", "mean", "std"))
    assert nine["mean"] == pytest.approx(0.85) and nine["std"] == pytest.approx(0.05)


def test_sizes_asked_for_get_rows_even_without_trials() -> None:
    curve = curves.scaling_curve(trials_table(), sizes=range(1, 10))
    assert curve["n_tasks"].tolist() == list(range(1, 10))
    empty = curve[curve["n_tasks"] == 5].iloc[0]
    assert empty["trials"] == 0 and empty["completed"] == 0 and math.isnan(empty["mean"])


def test_an_empty_search_gives_an_empty_curve() -> None:
    empty = pd.DataFrame({"n_tasks": [], "status": [], "score": []})
    curve = curves.scaling_curve(empty)
    assert curve.empty and list(curve.columns) == list(curves.CURVE_COLUMNS)


def test_a_table_without_the_needed_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks the column.*status"):
        curves.scaling_curve(pd.DataFrame({"n_tasks": [1], "score": [0.5]}))


def test_format_table_aligns_columns_and_marks_missing_values() -> None:
    text = curves.format_table(curves.scaling_curve(trials_table()))
    lines = text.splitlines()
    assert lines[0].split() == list(curves.CURVE_COLUMNS)
    assert lines[1].split() == ["1", "3", "2", "0.7000", "0.6000", "0.1414"]
    assert lines[3].split() == ["3", "1", "0", "-", "-", "-"]
    assert len({len(line) for line in lines}) == 1


def test_write_curve_writes_the_table_as_csv_and_a_png(tmp_path: Path) -> None:
    curve = curves.scaling_curve(trials_table(), sizes=range(1, 10))
    csv_path, png_path = curves.write_curve(curve, tmp_path / "out" / "deep", title="quickstart")
    assert (csv_path.name, png_path.name) == ("scaling_curve.csv", "scaling_curve.png")
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == list(curves.CURVE_COLUMNS)
    assert [int(r["n_tasks"]) for r in rows] == list(range(1, 10))
    assert float(rows[0]["best"]) == 0.7 and rows[4]["mean"] == ""
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.read_csv(csv_path).equals(curve)


def test_write_curve_draws_an_empty_search(tmp_path: Path) -> None:
    empty = curves.scaling_curve(
        pd.DataFrame({"n_tasks": [2], "status": ["errored"], "score": [0]})
    )
    _, png_path = curves.write_curve(empty, tmp_path, title="nothing finished")
    assert png_path.stat().st_size > 0
