"""The controls of a transfer score: the word-shuffled training data, accuracy per label, and how the
report reads them (never as candidates). Known answers planted in small tables; the search that
trains them for real is at the end (e2e)."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest
from processes import run_cli
from search_specs import search_spec, write_spec

from xlt_search.analysis import best, chance, contributions, controls, curves, labels
from xlt_search.data import PreparedData
from xlt_search.data.controls import controlled
from xlt_search.metrics import label_accuracy
from xlt_search.search import make_plan
from xlt_search.spec import parse_spec
from xlt_search.tasks import REGISTRY
from xlt_search.trial import Phase
from xlt_search.trial.scoring import report_metrics

# The shuffle.

PAIRS = datasets.Dataset.from_dict(
    {
        "text_a": [f"a{i} b{i} c{i} d{i} e{i} f{i}" for i in range(20)],
        "text_b": [f"x{i} y{i} z{i} w{i}" for i in range(20)],
        "label": [i % 3 for i in range(20)],
    }
)
CHOICES = datasets.Dataset.from_dict(
    {
        "context": ["one two three four five"] * 10,
        "choices": [["red green blue", "cat dog cow hen"]] * 10,
        "label": [0, 1] * 5,
    }
)
TAGS = datasets.Dataset.from_dict(
    {"tokens": [["p", "q", "r", "s", "t"]] * 10, "tags": [[0, 1, 2, 3, 4]] * 10}
)


def _task(kind: str):  # noqa: ANN202
    return next(t for t in REGISTRY.values() if t.kind == kind)


def test_the_word_shuffle_is_deterministic_changes_order_and_keeps_words_and_labels() -> None:
    task = _task("classification")
    once = controlled(task, PAIRS, "word_shuffle", seed=0)
    assert once.to_list() == controlled(task, PAIRS, "word_shuffle", seed=0).to_list()
    assert once.to_list() != controlled(task, PAIRS, "word_shuffle", seed=1).to_list()
    assert once["label"] == PAIRS["label"]
    moved = 0
    for before, after in zip(PAIRS, once, strict=True):
        for field in ("text_a", "text_b"):
            assert Counter(after[field].split()) == Counter(before[field].split())
            moved += after[field] != before[field]
    assert moved >= 35  # of 40 fields: a shuffle of 4 or 6 words rarely keeps its order


def test_the_word_shuffle_of_choices_and_tags_keeps_each_choice_and_each_words_tag() -> None:
    shuffled = controlled(_task("multiple_choice"), CHOICES, "word_shuffle", seed=0)
    assert shuffled["label"] == CHOICES["label"]
    for before, after in zip(CHOICES, shuffled, strict=True):
        assert Counter(after["context"].split()) == Counter(before["context"].split())
        for choice, moved in zip(before["choices"], after["choices"], strict=True):
            assert Counter(moved.split()) == Counter(choice.split())
    assert len({row["context"] for row in shuffled}) > 1  # each row its own order
    tagged = controlled(_task("tagging"), TAGS, "word_shuffle", seed=0)
    for row in tagged:
        assert sorted(row["tokens"]) == ["p", "q", "r", "s", "t"]
        assert [ord(word) - ord("p") for word in row["tokens"]] == row["tags"]  # tags follow
    assert any(row["tokens"] != ["p", "q", "r", "s", "t"] for row in tagged)


def test_a_span_task_is_not_shuffled() -> None:
    with pytest.raises(ValueError, match="span task"):
        controlled(_task("span"), PAIRS, "word_shuffle", seed=0)


# Accuracy per label.


def test_label_accuracy_on_planted_predictions() -> None:
    golds = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    predictions = [0, 0, 0, 1, 1, 0, 2, 2, 0, 0]
    assert label_accuracy(predictions, golds, ("ent", "neu", "con")) == {
        "ent": 0.75,
        "neu": 0.5,
        "con": 0.5,
    }
    assert label_accuracy(predictions, golds) == {"0": 0.75, "1": 0.5, "2": 0.5}  # no names
    one_class = label_accuracy([1] * len(golds), golds)
    assert one_class == {"0": 0.0, "1": 1.0, "2": 0.0}
    assert label_accuracy([0, 1], [1, 1]) == {"1": 0.5}  # a label no row has is left out


def test_a_report_names_each_labels_accuracy_by_target_language_and_label() -> None:
    task = REGISTRY["syn_lead"]
    data = PreparedData("", {}, {"syn_lead": task}, {"en": "e", "xc1": "c"}, "", 0, 32)
    scores = {
        "syn_lead": {
            lang: {"accuracy": 0.6, "label.pole0": 0.9, "label.pole1": 0.3}
            for lang in ("en", "xc1")
        }
    }
    metrics = report_metrics(scores, data, 10, None, Phase.TARGET, final=True)
    assert metrics["label.syn_lead.xc1.pole0"] == 0.9
    assert metrics["label.syn_lead.en.pole1"] == 0.3
    assert metrics["score"] == 0.6
    assert not any(key.startswith("lang.") and "label" in key for key in metrics)


# The report's reading of controls, on a planted table of trials.


def _trials(control_scores: list[float], baseline_scores: list[float]) -> pd.DataFrame:
    """A search's trials: the baseline and a control over three seeds each, and two subsets of
    size 1 (one seed each); the control scores whatever the test plants."""
    rows = []
    for seed, (ours, theirs) in enumerate(zip(baseline_scores, control_scores, strict=True)):
        rows.append({"tasks": "", "n_tasks": 0, "seed": seed, "score": ours, "control": None})
        rows.append({"tasks": "", "n_tasks": 0, "seed": seed, "score": theirs})
        rows[-1]["control"] = "word_shuffle"
    rows += [
        {"tasks": "a", "n_tasks": 1, "seed": 0, "score": 0.55, "use.a": True, "use.b": False},
        {"tasks": "b", "n_tasks": 1, "seed": 0, "score": 0.45, "use.a": False, "use.b": True},
    ]
    table = pd.DataFrame(rows)
    table["status"] = "completed"
    table["run_id"] = [f"r{i}" for i in range(len(table))]
    table["score.t"] = table["score"]
    table["lang.t.en"] = table["score"]
    table["label.t.en.yes"] = table["score"]
    table["label.t.en.no"] = 1 - table["score"]
    return table.fillna({"use.a": False, "use.b": False})


BASELINE = [0.40, 0.42, 0.44]


def test_a_control_that_scores_highest_enters_no_curve_no_fit_and_is_never_best() -> None:
    trials = _trials([0.90, 0.91, 0.92], BASELINE)
    curve = curves.scaling_curve(trials, [1])
    assert curve.loc[curve["n_tasks"] == 0, "completed"].item() == 3  # the baseline's seeds only
    assert curve.loc[curve["n_tasks"] == 0, "mean"].item() == pytest.approx(0.42)
    assert curves.seed_variance(trials)["mean"].tolist() == [pytest.approx(0.42)]
    found = best.best_configuration(trials)
    assert found is not None and found.tasks == "a"
    counted = contributions.counted_rows(trials, with_baseline=True)
    assert len(counted) == 5 and not controls.is_control(counted).any()
    levels = {"t": {"en": chance.Chance(0.5, 100)}}
    assert chance.check_learning(trials, levels).targets[0].baseline_score == pytest.approx(0.42)


def test_a_baseline_well_above_its_control_beats_it_with_a_paired_interval() -> None:
    table = controls.control_table(_trials([0.30, 0.31, 0.35], BASELINE), ["score", "score.t"])
    row = table[table["metric"] == "score"].iloc[0]
    assert row["difference"] == pytest.approx(0.10)
    assert row["seeds"] == 3 and 0 < row["ci_low"] < 0.10 < row["ci_high"]
    assert row["verdict"] == "the baseline beats the control"
    (line,) = controls.lines(table)
    assert line.startswith("control word_shuffle: baseline 0.4200, control 0.3200, difference")


def test_a_control_as_good_as_the_baseline_is_not_beaten() -> None:
    table = controls.control_table(_trials([0.43, 0.40, 0.43], BASELINE), ["score"])
    row = table.iloc[0]
    assert row["ci_low"] < 0 < row["ci_high"]
    assert row["verdict"].startswith("the baseline does not beat the control")
    one_seed = controls.control_table(_trials([0.43], [0.40]), ["score"]).iloc[0]
    assert math.isnan(one_seed["ci_low"]) and "one seed: no interval" in one_seed["verdict"]
    assert controls.control_table(_trials([], []), ["score"]).empty  # no control ran


def test_the_label_table_flags_a_model_that_predicts_one_class_and_only_it() -> None:
    trials = _trials([0.97, 0.98, 0.55], BASELINE)  # two control seeds answer "yes" to all
    table = labels.label_table(trials, best.best_configuration(trials))
    models = set(table["model"])
    assert models == {"best (a)", "baseline", "control word_shuffle"}
    control = table[table["model"] == "control word_shuffle"].set_index("label")
    assert control.loc["yes", "accuracy"] == pytest.approx(2.5 / 3)
    assert control.loc["no", "seeds"] == 3
    assert control["one_class_seeds"].tolist() == [2, 2]
    assert table.loc[table["model"] != "control word_shuffle", "one_class_seeds"].eq(0).all()
    (line,) = labels.one_class_lines(table)
    assert line.startswith("control word_shuffle predicts one class on t (en) in up to 2 of 3")


# The spec and the plan.


def test_a_control_adds_one_baseline_trial_per_seed_to_the_plan() -> None:
    raw = search_spec("controls", pool_size=2, seeds=3)
    raw["subsets"].update(baseline=True, controls=["word_shuffle"])
    plan = make_plan(parse_spec(raw))
    assert plan.num_trials == (2 + 1 + 1) * 3  # two subsets, the baseline, the control
    budget = raw["budget"]
    each_baseline = budget["target_steps"] * 2
    each_subset = budget["intermediate_steps"] + each_baseline
    assert plan.budget_steps == 3 * (2 * each_subset + 2 * each_baseline)


# A real search (e2e): the word-shuffle control on the word-order target syn_lead.


@pytest.mark.e2e
def test_a_search_with_a_word_shuffle_control(tmp_path: Path) -> None:
    from xlt_search.tracking import load_trials

    raw = search_spec("ctl", tmp_path, pool_size=1, seeds=3, targets=[{"task": "syn_lead"}])
    raw["subsets"].update(baseline=True, controls=["word_shuffle"])
    raw["budget"].update(intermediate_steps=40, target_steps=300, report_every_steps=100)
    raw["hyperparameters"] = {"learning_rate": 1.0e-3, "per_device_batch_size": 32}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "run",
        str(write_spec(tmp_path, raw)),
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri, "XLT_SEARCH_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "word-shuffling syn_lead" not in result.stdout  # the library's bar is quiet
    assert "tokenized syn_lead/train/en/word_shuffle" in result.stdout  # prepared once

    trials = load_trials("ctl", uri)
    control = trials[trials["control"] == "word_shuffle"]
    assert sorted(control["run_name"]) == ["control-word-shuffle"] + [
        f"control-word-shuffle-seed{s}" for s in (1, 2)
    ]
    assert set(control["status"]) == {"completed"} and set(control["n_tasks"]) == {0}

    report = next((tmp_path / "runs").glob("ctl-*/report"))
    with (report / "controls.csv").open() as handle:
        rows = {row["metric"]: row for row in csv.DictReader(handle)}
    score = rows["score"]
    assert float(score["control_score"]) < float(score["baseline"]), score
    assert float(score["ci_low"]) > 0 and score["verdict"] == "the baseline beats the control"
    assert float(score["control_score"]) < 0.6  # about chance (0.5): word order was the signal
    with (report / "scaling_curve.csv").open() as handle:
        baseline = next(r for r in csv.DictReader(handle) if r["n_tasks"] == "0")
    assert baseline["completed"] == "3"  # the baseline's seeds, not the control's
    with (report / "contributions.csv").open() as handle:
        assert [row["task"] for row in csv.DictReader(handle)] == raw["pool"]
    with (report / "labels.csv").open() as handle:
        models = {row["model"] for row in csv.DictReader(handle)}
    assert {"baseline", "control word_shuffle"} <= models
    summary = (report / "summary.md").read_text()
    assert "## Controls" in summary and "## Accuracy per label" in summary
    assert "best configuration: syn_sentiment" in result.stdout or "baseline (k=0)" in result.stdout
    assert "control word_shuffle: baseline" in result.stdout
