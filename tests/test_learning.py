"""A search on a target whose labels are random: the report says nothing was learned and ranks
nothing. Real processes: the CLI, a local Ray instance, a SQLite MLflow store.

The target is the synthetic suite's syn_nli read from copies whose labels were shuffled, through
the spec's `tasks:` section, as a user points a registered task at files of their own.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from processes import run_cli
from search_specs import search_spec, write_spec

from xlt_search.synthetic import ensure_suite

pytestmark = pytest.mark.e2e


def shuffled_copy(source: Path, target: Path, seed: int) -> None:
    """The JSON-lines file with its labels permuted: the text says nothing about the label."""
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    labels = [row["label"] for row in rows]
    random.Random(seed).shuffle(labels)
    target.write_text(
        "".join(json.dumps({**r, "label": y}) + "\n" for r, y in zip(rows, labels, strict=True))
    )


def test_random_labels_give_a_report_that_says_nothing_was_learned(tmp_path: Path) -> None:
    suite = ensure_suite() / "data" / "syn_nli"
    files = tmp_path / "random_nli"
    files.mkdir()
    for i, name in enumerate(["train.en.jsonl", *(f"validation.{c}.jsonl" for c in ("en", "xf1"))]):
        shuffled_copy(suite / name, files / name, seed=i)
    raw = search_spec(
        "random-labels",
        tmp_path,
        pool_size=2,
        targets=[{"task": "syn_nli", "languages": ["en", "xf1"]}],
        subsets={"sampler": "grid", "sizes": [1, 2], "baseline": True},
        tasks={
            "syn_nli": {
                "sources": [
                    {
                        "path": "json",
                        "data_files": {
                            "train": str(files / "train.en.jsonl"),
                            "validation": str(files / "validation.{lang}.jsonl"),
                        },
                        "splits": {"train": "train", "validation": "validation"},
                    }
                ]
            }
        },
    )
    spec = write_spec(tmp_path, raw)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = run_cli("run", str(spec), cwd=tmp_path, env=env, timeout_s=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "nothing was learned: syn_nli en" in result.stdout
    (summary,) = (tmp_path / "runs").glob("*/report/summary.md")
    text = summary.read_text()
    assert "**nothing was learned: syn_nli en" in text
    assert "Not estimated: nothing was learned" in text
    assert "| rank |" not in text  # no ranking table at all
    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("random-labels").experiment_id],
        "tags.`xlt.role` = 'search'",
    )
    assert parent.data.tags["mlflow.note.content"].startswith("nothing was learned")
    chance = json.loads(parent.data.tags["xlt.chance"])["syn_nli"]["en"]
    assert 0.33 <= chance[0] < 0.40 and chance[1] > 100
