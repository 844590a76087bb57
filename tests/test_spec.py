"""The spec: every shipped YAML validates, and each kind of mistake gets one line naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xlt_search.errors import SpecError, UnknownTaskError, UserError
from xlt_search.spec import load_spec, parse_spec, spec_to_dict

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "search_spaces").glob("*.yaml"))
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"


def quickstart() -> dict:
    return yaml.safe_load(QUICKSTART.read_text())


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_validate_and_open_with_their_command(path: Path) -> None:
    spec = load_spec(path)
    assert spec.pool and spec.targets
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "xlt-search run search_spaces/" + path.name in first


def test_round_trip_keeps_every_value() -> None:
    spec = load_spec(QUICKSTART)
    assert parse_spec(spec_to_dict(spec)) == spec


def test_defaults_fill_what_the_yaml_leaves_out() -> None:
    raw = quickstart()
    raw.pop("resources", None)
    spec = parse_spec(raw)
    assert spec.resources.cpu == 1.0 and spec.resources.gpu == 0.0
    assert spec.precision == "auto"
    assert spec.sizes == tuple(range(1, len(spec.pool) + 1))
    assert spec.max_budget_steps == (
        spec.budget.intermediate_steps + spec.budget.target_steps * len(spec.targets)
    )


def _error(raw: dict) -> str:
    with pytest.raises(UserError) as info:
        parse_spec(raw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_typo_in_a_top_level_key_suggests_the_right_one() -> None:
    raw = quickstart()
    raw["budgett"] = raw.pop("budget")
    assert "unknown key 'budgett'" in _error(raw) and "did you mean 'budget'" in _error(raw)


def test_typo_in_a_nested_key_names_its_path() -> None:
    raw = quickstart()
    raw["budget"]["intermediate_step"] = raw["budget"].pop("intermediate_steps")
    message = _error(raw)
    assert "budget.intermediate_step" in message and "intermediate_steps" in message


def test_unknown_task_suggests_the_closest() -> None:
    raw = quickstart()
    wrong = raw["pool"][0] + "x"
    raw["pool"][0] = wrong
    with pytest.raises(UnknownTaskError, match=f"unknown task '{wrong}'.*did you mean"):
        parse_spec(raw)


def test_empty_pool() -> None:
    raw = quickstart()
    raw["pool"] = []
    assert "pool" in _error(raw) and "empty" in _error(raw)


def test_subset_size_larger_than_the_pool() -> None:
    raw = quickstart()
    raw["pool"] = raw["pool"][:3]
    raw["subsets"]["sizes"] = [1, 2, 5]
    message = _error(raw)
    assert "size 5" in message and "from 1 to 3" in message


def test_wrong_types_and_values() -> None:
    raw = quickstart()
    raw["budget"]["target_steps"] = "many"
    assert "budget.target_steps: expected int" in _error(raw)
    raw = quickstart()
    raw["subsets"]["sampler"] = "stratifed"
    assert "did you mean 'stratified'" in _error(raw)
    raw = quickstart()
    raw["hyperparameters"] = {"learning_rat": 0.001}
    assert "did you mean 'learning_rate'" in _error(raw)
    raw = quickstart()
    raw["hyperparameters"] = {"learning_rate": {"loguniform": [0.01, 0.001]}}
    assert "low < high" in _error(raw)
    raw = quickstart()
    raw["precision"] = "fp16"
    assert "precision" in _error(raw) and "'bf16'" in _error(raw)
    raw = quickstart()
    raw["targets"] = [{"task": raw["targets"][0]["task"], "languages": ["en"]}]
    assert "non-English" in _error(raw)


def _set(dotted: str, value: object):
    def change(raw: dict) -> None:
        *parents, last = dotted.split(".")
        for key in parents:
            raw = raw.setdefault(key, {})
        raw[last] = value

    return change


def _add_target(target: dict, tasks: dict):
    def change(raw: dict) -> None:
        raw["targets"].append(target)
        raw["tasks"] = tasks

    return change


XNLI_DE = {"task": "xnli", "languages": ["de"]}
MNLI_AS_CHOICES = {
    "kind": "multiple_choice",
    "columns": {"context": "premise", "choices": "hypothesis", "label": "label"},
}

# The rules a trial relies on, each with a spec that breaks it and the one line it gets.
TRIAL_RULES = {
    "no target": (_set("targets", []), "targets: list at least one target task"),
    "a target twice": (
        lambda raw: raw["targets"].append({"task": "syn_nli"}),
        "targets: syn_nli is listed twice; list each target once",
    ),
    "no intermediate steps": (
        _set("budget.intermediate_steps", 0),
        "budget.intermediate_steps: must be positive",
    ),
    "no target steps": (_set("budget.target_steps", 0), "budget.target_steps: must be positive"),
    "no reports": (
        _set("budget.report_every_steps", 0),
        "budget.report_every_steps: must be positive",
    ),
    "negative probe steps": (
        _set("budget.probe_steps", -1),
        "budget.probe_steps: must be positive",
    ),
    "an empty batch": (
        _set("hyperparameters.per_device_batch_size", {"choice": [0, 16]}),
        "hyperparameters.per_device_batch_size: 0 is no batch; it must be at least 1 "
        "(e.g. per_device_batch_size: 16)",
    ),
    "a task twice in the pool, so in a subset": (
        lambda raw: raw["pool"].append(raw["pool"][0]),
        "pool: syn_sentiment is listed twice; list each task once",
    ),
    "a target's metric that does not apply to its kind": (
        _set("tasks", {"syn_nli": {"metric": "exact_match"}}),
        "tasks.syn_nli.metric: 'exact_match' does not apply to classification tasks; "
        "use one of accuracy, f1",
    ),
    "a target in English only": (
        _set("targets", [{"task": "syn_nli", "languages": ["en"]}]),
        "targets: syn_nli needs at least one non-English language to score transfer",
    ),
    "a target trained on a task of other labels": (
        _set("tasks", {"syn_nli": {"train_tasks": ["syn_sentiment"]}}),
        "targets: syn_nli trains on syn_sentiment, a classification task with 2 labels; "
        "it must match the target's kind and labels (classification, 3)",
    ),
    "a target whose training task changed its labels": (
        _add_target(XNLI_DE, {"mnli": {"num_labels": 2, "labels": ["yes", "no"]}}),
        "targets: xnli trains on mnli, a classification task with 2 labels; "
        "it must match the target's kind and labels (classification, 3)",
    ),
    "a target whose training task changed its kind": (
        _add_target(XNLI_DE, {"mnli": MNLI_AS_CHOICES}),
        "targets: xnli trains on mnli, a multiple_choice task with 3 labels; "
        "it must match the target's kind and labels (classification, 3)",
    ),
    "sequences too short": (
        _set("data.max_seq_length", 4),
        "data.max_seq_length: must be at least 8",
    ),
}


@pytest.mark.parametrize("case", list(TRIAL_RULES))
def test_a_rule_the_trial_relies_on_is_one_line(case: str) -> None:
    change, expected = TRIAL_RULES[case]
    raw = quickstart()
    change(raw)
    assert _error(raw) == expected


def test_deprecated_file_store_is_refused() -> None:
    raw = quickstart()
    raw["mlflow"] = {"tracking_uri": "file:///tmp/mlruns"}
    assert "sqlite:///mlflow.db" in _error(raw)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nbudget: {intermediate_steps: 3\n")
    with pytest.raises(SpecError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_spec(path)


def test_missing_file() -> None:
    with pytest.raises(UserError, match="no such spec file"):
        load_spec("search_spaces/nope.yaml")


MY_TASK = {
    "kind": "classification",
    "sources": [
        {"path": "csv", "data_files": {"train": "x/train.csv", "validation": "x/{lang}.csv"}}
    ],
    "columns": {"text_a": "sentence", "label": "label"},
    "num_labels": 2,
    "metric": "accuracy",
    "languages": ["en", "xx"],
    "train_tasks": ["syn_sentiment"],
}
XX = {"name": "Extra", "family": "Made-up", "script": "Latn"}


def test_a_spec_adds_tasks_and_languages_and_changes_registered_tasks() -> None:
    raw = quickstart()
    raw["tasks"] = {
        "my_task": MY_TASK,
        "ccg": {"sources": [{"path": "json", "data_files": {"train": "ccg/train.jsonl"}}]},
    }
    raw["languages"] = {"xx": XX}
    raw["targets"].append({"task": "my_task", "languages": ["en", "xx"]})
    raw["data"]["max_train_examples_per_task"] = {"syn_sentiment": 100}
    spec = parse_spec(raw)
    mine = spec.registry["my_task"]
    assert mine.sources[0].data_files == {"train": "x/train.csv", "validation": "x/{lang}.csv"}
    assert mine.train_tasks == ("syn_sentiment",) and spec.known_languages["xx"].family == "Made-up"
    ccg = spec.registry["ccg"]
    assert ccg.sources[0].path == "json" and ccg.num_labels == 1363  # the rest is the registry's
    assert parse_spec(spec_to_dict(spec)) == spec


def test_a_named_pool_and_the_default_pool() -> None:
    raw = quickstart()
    raw["pool"] = "synthetic"
    assert parse_spec(raw).pool == tuple(quickstart()["pool"])
    raw.pop("pool")
    raw["subsets"]["sizes"] = [1, 9]
    from xlt_search.tasks import PHANG2020_POOL

    assert parse_spec(raw).pool == PHANG2020_POOL


def test_mistakes_in_a_task_declaration_name_the_field() -> None:
    def error_with(task: dict) -> str:
        raw = quickstart()
        raw["tasks"] = {"my_task": task}
        raw["languages"] = {"xx": XX}
        return _error(raw)

    assert "unknown key 'tasks.my_task.colums'" in error_with(
        {**{k: v for k, v in MY_TASK.items() if k != "columns"}, "colums": MY_TASK["columns"]}
    )
    assert "missing key 'tasks.my_task.metric'" in error_with(
        {k: v for k, v in MY_TASK.items() if k != "metric"}
    )
    assert "'text' is not a field of classification tasks" in error_with(
        {**MY_TASK, "columns": {"text": "sentence", "label": "label"}}
    )
    assert "map a column to 'label'" in error_with({**MY_TASK, "columns": {"text_a": "s"}})
    assert "'exact_match' does not apply to classification" in error_with(
        {**MY_TASK, "metric": "exact_match"}
    )
    assert "3 labels named but num_labels is 2" in error_with(
        {**MY_TASK, "labels": ["a", "b", "c"]}
    )
    assert "syn_pole_span is not a classification task" in error_with(
        {**MY_TASK, "train_tasks": ["syn_pole_span"]}
    )
    assert "unknown language 'yy'" in error_with({**MY_TASK, "languages": ["en", "yy"]})
    assert "tasks.my_task.kind: 'clasification'" in error_with({**MY_TASK, "kind": "clasification"})
    # shares carve splits out of one source split: every split they name maps to the same one
    shared = {"path": "json", "data_files": {"validation": "a.jsonl", "test": "a.jsonl"}}
    for shares, splits in (
        ({"validation": 0.5, "test": 0.6}, {"validation": "test", "test": "test"}),
        ({"validation": 0.5, "test": 0.5}, {"validation": "dev", "test": "test"}),
        ({"validation": 0.5, "train": 0.5}, {"validation": "test", "test": "test"}),
        ({"validation": 0.0}, {"validation": "test"}),
    ):
        source = {**shared, "splits": splits, "shares": shares}
        message = error_with({**MY_TASK, "sources": [source]})
        assert message.startswith("tasks.my_task.sources[0].shares: every split it names must map")
    fine = {
        **shared,
        "splits": {"validation": "test", "test": "test"},
        "shares": {"validation": 0.5},
    }
    raw = quickstart()
    raw["tasks"] = {"my_task": {**MY_TASK, "sources": [fine]}}
    raw["languages"] = {"xx": XX}
    assert parse_spec(raw).registry["my_task"].sources[0].shares == {"validation": 0.5}


def test_retrieval_tasks_train_nothing() -> None:
    raw = quickstart()
    raw["pool"] = raw["pool"][:2] + ["tatoeba"]
    raw["subsets"]["sizes"] = [1]
    assert "tatoeba is a retrieval task" in _error(raw)
    raw = quickstart()
    raw["targets"].append({"task": "tatoeba", "languages": ["de"]})
    spec = parse_spec(raw)
    assert [t.task for t in spec.fine_tuned_targets] == ["syn_nli", "syn_copa"]
    budget = spec.budget
    assert spec.max_budget_steps == budget.intermediate_steps + 2 * budget.target_steps


def test_a_parallel_task_trains_but_is_never_a_target() -> None:
    raw = quickstart()
    raw["pool"] = raw["pool"][:2] + ["tatoeba_parallel"]
    raw["subsets"]["sizes"] = [1]
    assert "tatoeba_parallel" in parse_spec(raw).pool
    raw["targets"].append({"task": "tatoeba_parallel"})
    assert "tatoeba_parallel is a parallel task" in _error(raw)


def test_a_pool_task_may_not_train_on_a_target_s_scored_rows() -> None:
    raw = quickstart()
    raw["pool"] = raw["pool"][:2] + ["tatoeba_parallel"]
    raw["subsets"]["sizes"] = [1]
    raw["targets"].append({"task": "tatoeba", "languages": ["de"]})
    message = _error(raw)
    assert "tatoeba_parallel trains on google/xtreme tatoeba.deu validation" in message
    assert "target tatoeba is scored on" in message
    # tatoeba scored on languages whose pairs the pool does not train on: nothing shared
    raw["tasks"] = {
        "tatoeba_parallel": {
            "sources": [
                {"path": "google/xtreme", "name": "tatoeba.fra", "splits": {"train": "validation"}}
            ]
        }
    }
    assert parse_spec(raw).pool[-1] == "tatoeba_parallel"


def test_caps_must_be_positive_and_name_known_tasks() -> None:
    raw = quickstart()
    raw["data"]["max_train_examples_per_task"] = {"mnlii": 10}
    assert "did you mean 'mnli'" in _error(raw)
    raw["data"]["max_train_examples_per_task"] = {"mnli": 0}
    assert "max_train_examples_per_task.mnli: must be at least 1" in _error(raw)
    raw["data"]["max_train_examples_per_task"] = {"xnli": 1000}  # xnli's training data is mnli's
    assert "xnli trains on mnli; cap mnli instead" in _error(raw)


def test_entity_f1_needs_bio_labels() -> None:
    raw = quickstart()
    raw["tasks"] = {"panx": {"labels": [], "num_labels": 7}}
    assert "entity_f1 reads entities from BIO tags" in _error(raw)


def test_the_baseline_runs_by_default_except_with_optuna() -> None:
    from xlt_search.search import make_plan

    raw = quickstart()
    spec = parse_spec(raw)
    assert spec.runs_baseline and spec.trial_seeds == (0,)
    plan = make_plan(spec)
    assert plan.subsets[0] == () and plan.num_trials == 1 + 3 * 8 + 1
    raw["subsets"]["baseline"] = False
    assert make_plan(parse_spec(raw)).num_trials == 3 * 8 + 1
    raw["subsets"] = {"sampler": "optuna", "num_samples": 5}
    assert not parse_spec(raw).runs_baseline
    raw["subsets"]["baseline"] = True
    message = _error(raw)
    assert message.startswith("subsets.baseline: the optuna sampler") and "sampler: grid" in message


def test_seeds_repeat_every_configuration() -> None:
    from xlt_search.search import describe_plan, make_plan

    raw = quickstart()
    raw.update(seed=7, seeds=3)
    spec = parse_spec(raw)
    assert spec.trial_seeds == (7, 8, 9)
    plan = make_plan(spec)
    assert plan.num_trials == 3 * (1 + 3 * 8 + 1)
    assert "seeds 7, 8, 9 each" in describe_plan(plan)
    raw["seeds"] = 0
    assert _error(raw) == "seeds: must be at least 1"
    raw.update(seeds=2, subsets={"sampler": "optuna"})
    assert _error(raw).startswith("seeds: the optuna sampler picks each configuration once")


def test_a_grid_hyperparameter_runs_every_configuration_at_each_of_its_values() -> None:
    from ray.tune.search.variant_generator import generate_variants

    from xlt_search.search import describe_plan, make_plan
    from xlt_search.search.tuner import tune_domain

    raw = quickstart()
    raw.update(seeds=2, hyperparameters={"robust_training": {"grid": ["none", "adversarial"]}})
    spec = parse_spec(raw)
    assert parse_spec(spec_to_dict(spec)) == spec
    plan = make_plan(spec)
    assert spec.grid_points == 2 and plan.num_trials == 2 * 2 * (1 + 3 * 8 + 1)
    assert "each at 2 grid points" in describe_plan(plan)
    space = {"robust_training": tune_domain(spec.hyperparameters["robust_training"]), "seed": 0}
    variants = [v["robust_training"] for _, v in generate_variants(space)]
    assert sorted(variants) == ["adversarial", "none"]
    raw["subsets"] = {"sampler": "optuna"}
    raw["seeds"] = 1
    assert _error(raw).startswith("hyperparameters.robust_training: the optuna sampler picks")


def test_mixed_languages_reach_the_trial_and_its_splits_and_survive_the_round_trip() -> None:
    from xlt_search.search import make_plan
    from xlt_search.search.plan import target_configs
    from xlt_search.trial import required_splits

    raw = quickstart()
    raw["targets"] = [{"task": "syn_nli", "languages": ["xf1"], "mixed_languages": ["en", "xf1"]}]
    spec = parse_spec(raw)
    assert parse_spec(spec_to_dict(spec)) == spec
    (target,) = target_configs(spec)
    assert target.mixed_languages == ("en", "xf1")
    assert target.mixed_pairs == (("en", "en"), ("en", "xf1"), ("xf1", "en"), ("xf1", "xf1"))
    cells = [r.key for r in required_splits((), (target,), spec.registry) if r.second]
    assert cells == [f"syn_nli/validation/{a}-{b}" for a, b in target.mixed_pairs]
    assert make_plan(spec).num_trials > 0
