"""A real search on the synthetic suite with mixed languages on its target: every trial's matrix
in MLflow, the dropped rows on the parent run, and the report's reading of the planted gap."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from processes import run_cli
from search_specs import search_spec, write_spec

from xlt_search.names import mixed_metric
from xlt_search.tracking import load_trials

LANGUAGES = ["en", "xc1", "xc2", "xf1", "xf2"]
NEAR = ["en", "xc1", "xc2"]  # English and the close family: most words shared


@pytest.mark.e2e
def test_the_matrix_is_logged_for_every_trial_and_the_far_familys_gap_is_recovered(
    tmp_path: Path,
) -> None:
    raw = search_spec(
        "mixed",
        tmp_path,
        pool_size=2,
        targets=[
            {"task": "syn_nli", "mixed_languages": LANGUAGES},
            {"task": "syn_copa", "mixed_languages": NEAR},
        ],
    )
    raw["subsets"]["baseline"] = True
    raw["budget"] = {
        "intermediate_steps": 100,
        "target_steps": 400,
        "report_every_steps": 100,
        "probe_steps": 5,
        "scheduler": "fifo",
    }
    spec = write_spec(tmp_path, raw)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("run", str(spec), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr[-3000:]

    trials = load_trials("mixed", uri)
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}
    cells = [mixed_metric("syn_nli", f"{a}-{b}") for a in LANGUAGES for b in LANGUAGES]
    summaries = [mixed_metric("syn_nli", name) for name in ("diagonal", "off_diagonal", "gap")]
    assert trials[cells + summaries].notna().all().all()  # every cell, every trial
    # The alignment diagnostic, from syn_nli's parallel rows: a close language shares most of
    # English's words, a far one few, so English finds its translations in the close family more
    # often, before the map as after it.
    aligned = trials[[f"align.{lang}{part}" for lang in LANGUAGES[1:] for part in ("", ".before")]]
    assert aligned.notna().all().all() and ((aligned >= 0) & (aligned <= 1)).all().all()
    for part in ("", ".before"):
        close = trials[[f"align.xc1{part}", f"align.xc2{part}"]].mean(axis=1)
        far = trials[[f"align.xf1{part}", f"align.xf2{part}"]].mean(axis=1)
        assert (close > far).all(), (part, close.tolist(), far.tolist())

    client = mlflow.MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("mixed").experiment_id], "tags.`xlt.role` = 'search'"
    )
    counts = json.loads(parent.data.tags["xlt.mixed"])["syn_nli"]
    assert counts["by"] == "position" and counts["kept"] == 400 and counts["label"] == 0

    report = next((tmp_path / "runs").glob("mixed-*/report"))
    for name in ("mixed_matrix.csv", "mixed_syn_nli.png", "mixed_gaps.csv", "mixed_gap_curve.png"):
        assert (report / name).is_file(), name
    matrix = pd.read_csv(report / "mixed_matrix.csv")
    assert set(matrix["configuration"]) == {"best", "baseline"} and len(matrix) == 2 * (25 + 9)
    summary = (report / "summary.md").read_text()
    assert "## Mixed-language instances" in summary
    assert "syn_nli: 400 instances aligned by position" in summary

    table = pd.read_csv(report / "mixed_gaps.csv").set_index(["target", "configuration", "group"])
    for configuration in ("best", "baseline"):
        gap = table.loc[("syn_nli", configuration), "gap"]
        # Planted by the far family's words: mixes with a far part are harder than the diagonal,
        # and harder than the mixes within the near family (English and the close languages).
        assert gap["with synthetic-far"] > gap["without synthetic-far"] + 0.03, gap.to_dict()
        # Nothing planted: within the near family a mix keeps most words, so the matrix's gap
        # (which cancels how hard each language is) has no same-language advantage to find.
        near = table.loc[("syn_copa", configuration, "all")]
        assert near["ci_low"] <= 0 <= near["ci_high"], near.to_dict()
        assert near["verdict"] == "cannot tell"
