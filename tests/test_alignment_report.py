"""The alignment diagnostic against the score, in the report: a planted relation is found per
family, pure noise claims none, and too few points are not measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xlt_search.analysis.alignment import alignment_points, correlations, write_alignment

FAMILIES = {"xc1": "close", "xc2": "close", "xf1": "far", "xf2": "far"}


def trials(score_of, n: int = 20, seed: int = 0) -> pd.DataFrame:
    """`n` completed trials, each with a random alignment per language and its score from it."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = {"status": "completed"}
        for lang in FAMILIES:
            row[f"align.{lang}"] = aligned = rng.uniform(0.1, 0.9)
            row[f"align.{lang}.before"] = aligned / 2
            row[f"lang.syn_nli.{lang}"] = score_of(aligned, rng)
        rows.append(row)
    rows.append({"status": "errored", "align.xc1": 1.0, "lang.syn_nli.xc1": 0.0})  # never read
    return pd.DataFrame(rows)


def test_a_planted_relation_is_found_in_every_family() -> None:
    table = correlations(
        alignment_points(trials(lambda a, rng: 0.3 + 0.5 * a + rng.normal(0, 0.03)), FAMILIES)
    )
    assert list(table["family"]) == ["close", "far"] and (table["points"] == 40).all()
    assert (table["rho"] > 0.7).all() and (table["rho_low"] > 0).all()
    assert set(table["reading"]) == {"better aligned, better transfer"}


def test_pure_noise_claims_no_relation() -> None:
    claimed = 0
    for seed in range(10):
        table = correlations(
            alignment_points(trials(lambda a, rng: rng.uniform(0.3, 0.7), seed=seed), FAMILIES),
            seed=seed,
        )
        claimed += int((table["reading"] != "no relation can be claimed").sum())
    assert claimed <= 2  # of 20 intervals at 95%


def test_too_few_points_are_not_measured_and_no_alignment_writes_nothing(tmp_path: Path) -> None:
    table = correlations(alignment_points(trials(lambda a, rng: a, n=2), FAMILIES))
    assert set(table["reading"]) == {"not measured: too few points"} and table["rho"].isna().all()
    assert write_alignment(
        pd.DataFrame({"status": ["completed"], "score": [0.5]}), FAMILIES, tmp_path
    ) == ([], [])


def test_the_report_writes_the_table_the_figure_and_a_section(tmp_path: Path) -> None:
    files, lines = write_alignment(trials(lambda a, rng: 0.3 + 0.5 * a), FAMILIES, tmp_path)
    assert [f.name for f in files] == ["alignment.csv", "alignment.png"]
    assert all(f.stat().st_size > 0 for f in files)
    assert "## Alignment against transfer" in lines
    assert any(
        line.startswith("- far: better aligned, better transfer, Spearman +1.00") for line in lines
    )
