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
    raw["targets"] = [{"task": raw["targets"][0]["task"], "languages": ["en"]}]
    assert "non-English" in _error(raw)


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
