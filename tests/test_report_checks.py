"""The report's checks on searches logged to a real MLflow store: a stopped search gets a partial
report with no contributions, a search at chance says nothing was learned and ranks nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from search_specs import search_spec

from xlt_search import subsets
from xlt_search.analysis.chance import TAG, Chance, to_tag
from xlt_search.analysis.report import mark_parent_run, write_report
from xlt_search.spec import parse_spec
from xlt_search.tracking import SearchLogger

LEVELS = {"syn_nli": {"en": Chance(1 / 3, 300), "xf1": Chance(1 / 3, 300)}}


@pytest.fixture
def spec():
    return parse_spec(
        search_spec("checks", targets=[{"task": "syn_nli", "languages": ["en", "xf1"]}])
    )


def log(
    uri: str,
    spec,
    trials: list[tuple[tuple[str, ...], str, float, float]],
    seeds_and_scores: list[tuple[int, dict[str, float]]] | None = None,
) -> SearchLogger:
    """A search of `trials` (subset, status, English score, loss), each reported once, finally;
    `seeds_and_scores`: each trial's seed and metrics beyond those (seed 0, none by default)."""
    logger = SearchLogger(uri)
    logger.start(
        spec.experiment, "search", yaml.safe_dump({"name": spec.name}), {TAG: to_tag(LEVELS)}
    )
    for i, (chosen, status, english, loss) in enumerate(trials):
        trial_id = f"t{i}"
        seed, more = seeds_and_scores[i] if seeds_and_scores else (0, {})
        params = {"tasks": subsets.subset_key(chosen), "n_tasks": len(chosen), "seed": seed}
        logger.trial_started(
            trial_id, f"k{len(chosen)}", {**params, **subsets.use_flags(chosen, spec.pool)}
        )
        final = float(status == "completed")
        metrics = {
            "score": english,
            "lang.syn_nli.en": english,
            "lang.syn_nli.xf1": english,
            "score.syn_nli": english,
            "loss": loss,
            "budget_steps": 100,
            "final": final,
            **more,
        }
        logger.trial_result(trial_id, metrics, step=100)
        if status != "running":
            logger.trial_ended(trial_id, status)
    logger.flush()
    return logger


def test_a_stopped_search_gets_a_partial_report_with_no_contributions(spec, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # stopped after two trials: both still running, with the same chance-level probe score
    logger = log(
        uri,
        spec,
        [(("syn_kind",), "running", 0.34, 1.09), (("syn_stance",), "running", 0.34, 1.09)],
    )
    report = write_report(
        spec, uri, logger.parent_run_id, tmp_path / "report", progress=lambda _: None
    )
    text = (tmp_path / "report" / "summary.md").read_text()
    assert text.splitlines()[0] == "# checks: PARTIAL report (2 of 2 trials unfinished)"
    assert "Not estimated: 0 usable trials for 10 unknowns" in text
    assert "No trial completed, so there is no best configuration." in text
    assert report.conclusion()[0] == "partial report: 2 of 2 trials never ended"
    assert report.contributions["effect"].isna().all()


def test_a_search_at_chance_says_so_and_ranks_nothing(spec, tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pool = spec.pool
    chosen = [()] + [tuple(sorted({pool[i % 9], pool[(i * 4 + 1) % 9]})) for i in range(14)]
    rows = [(c, "completed", 0.33 + 0.002 * (i % 5), 1.0986) for i, c in enumerate(chosen)]
    logger = log(uri, spec, rows)
    report = write_report(
        spec, uri, logger.parent_run_id, tmp_path / "report", progress=lambda _: None
    )
    text = (tmp_path / "report" / "summary.md").read_text()
    assert text.splitlines()[0] == "# checks: report"
    assert "**nothing was learned: syn_nli en 0.3300 (the baseline) with chance 0.3333" in text
    assert "likely cause: the target training loss ended at 1.0986" in text
    assert "Not estimated: nothing was learned" in text and "| rank |" not in text
    assert report.gains.empty
    mark_parent_run(report, uri, logger.parent_run_id)
    parent = mlflow.MlflowClient(uri).get_run(logger.parent_run_id)
    assert parent.data.tags["mlflow.note.content"].startswith("nothing was learned")
    assert "xlt.best" in parent.data.tags  # the best of chance-level trials is still named


def test_a_search_of_two_targets_and_two_seeds_reports_their_agreement(tmp_path: Path) -> None:
    spec = parse_spec(
        search_spec(
            "robust",
            pool_size=4,
            seeds=2,
            targets=[
                {"task": "syn_nli", "languages": ["en", "xf1"]},
                {"task": "syn_copa", "languages": ["en", "xf1"]},
            ],
        )
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pool = spec.pool
    chosen = [(), *((t,) for t in pool), *((pool[i], pool[(i + 1) % 4]) for i in range(4))]
    rng = np.random.default_rng(0)
    rows, more = [], []
    for seed in (0, 1):
        for subset in chosen:
            # the first pool task helps both targets, the others do nothing
            nli, copa = 0.5 + 0.1 * (pool[0] in subset) + rng.normal(0.0, 0.01, 2)
            rows.append((subset, "completed", (nli + copa) / 2, 0.5))
            more.append((seed, {"score.syn_nli": nli, "score.syn_copa": copa}))
    logger = log(uri, spec, rows, more)
    report = write_report(
        spec, uri, logger.parent_run_id, tmp_path / "report", progress=lambda _: None
    )
    names = {path.name for path in report.files}
    assert {"target_agreement.csv", "seed_agreement.csv", "task_targets.csv"} <= names
    assert "rank_agreement.png" in names
    text = (tmp_path / "report" / "summary.md").read_text()
    assert "The configurations rank alike across targets: every interval is above 0." in text
    assert "The configurations rank alike across seeds: every interval is above 0." in text
    # a null task passes one target's 95% interval by chance, never both at once here
    assert f"Help every target: {pool[0]}." in text
