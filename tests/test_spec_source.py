"""Reading a spec file before it is validated: duplicate keys, `extends:` chains, `--set`
overrides, and the text a search keeps of the spec it ran."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from processes import run_cli

from xlt_search.errors import UserError
from xlt_search.spec import load_spec, parse_spec, read_spec
from xlt_search.spec.source import EXTENDS, merge, read_yaml

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"
QUICKSTART = SPACES / "quickstart.yaml"
LOCAL = sorted(SPACES.glob("*_local.yaml"))


def refusal(path: Path, *overrides: str) -> str:
    with pytest.raises(UserError) as refused:
        load_spec(path, overrides)
    line = str(refused.value)
    assert "\n" not in line
    return line


def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path: Path) -> None:
    spec = tmp_path / "twice.yaml"
    spec.write_text("name: a\nbudget:\n  target_steps: 4\n  probe_steps: 1\n  target_steps: 8\n")
    assert refusal(spec) == (
        f"{spec}: key 'target_steps' is given twice, at lines 3 and 5 (YAML would keep the last "
        "silently); keep one"
    )
    flow = tmp_path / "flow.yaml"
    flow.write_text("resources: {cpu: 1, cpu: 2}\n")
    assert "key 'cpu' is given twice, at lines 1 and 1" in refusal(flow)


def test_a_merge_key_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text("base: &base {x: 1, y: 2}\nother:\n  <<: *base\n  x: 3\n")
    assert read_yaml(path) == {"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}}


def test_a_folder_given_as_the_spec_says_it_is_a_folder() -> None:
    line = refusal(SPACES)
    assert line.startswith(f"{SPACES} is a folder, not a spec file; give one of its specs (")
    assert "quickstart.yaml" in line or ", ..." in line


def test_merge_goes_into_mappings_and_replaces_lists_and_domains() -> None:
    base = {
        "pool": ["a", "b"],
        "budget": {"target_steps": 4, "probe_steps": 1},
        "hyperparameters": {"learning_rate": {"loguniform": [1e-5, 1e-3]}, "weight_decay": 0.1},
        "tasks": {"ccg": {"sources": [{"path": "json"}], "num_labels": 3}},
    }
    child = {
        "pool": ["c"],
        "budget": {"target_steps": 8},
        "hyperparameters": {"learning_rate": {"choice": [1e-4]}},
        "tasks": {"ccg": {"num_labels": 5}},
    }
    assert merge(base, child) == {
        "pool": ["c"],
        "budget": {"target_steps": 8, "probe_steps": 1},
        "hyperparameters": {"learning_rate": {"choice": [1e-4]}, "weight_decay": 0.1},
        "tasks": {"ccg": {"sources": [{"path": "json"}], "num_labels": 5}},
    }
    assert base["budget"] == {"target_steps": 4, "probe_steps": 1}  # the base is left as it was


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_extends_chains_relative_to_each_specs_folder(tmp_path: Path) -> None:
    write(tmp_path / "base" / "quick.yaml", QUICKSTART.read_text())
    write(tmp_path / "base" / "short.yaml", "extends: quick.yaml\nbudget: {target_steps: 300}\n")
    mine = write(
        tmp_path / "mine" / "spec.yaml",
        "extends: ../base/short.yaml\nname: mine\nbudget: {probe_steps: 50}\npool: [syn_kind]\n",
    )
    spec, quick = load_spec(mine), load_spec(QUICKSTART)
    assert spec.name == "mine" and spec.pool == ("syn_kind",)
    assert (spec.budget.target_steps, spec.budget.probe_steps) == (300, 50)
    assert spec.budget.intermediate_steps == quick.budget.intermediate_steps
    assert spec.targets == quick.targets and spec.hyperparameters == quick.hyperparameters
    source = read_spec(mine)
    assert source.text.startswith(
        f"# the effective spec of {mine} (extends short.yaml; extends quick.yaml)\n"
    )
    assert parse_spec(yaml.safe_load(source.text)) == spec  # what a search logs reads back


def test_extends_refuses_a_cycle_a_missing_base_and_a_non_path(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "extends: b.yaml\nname: a\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\nname: b\n")
    assert refusal(a) == (
        f"{tmp_path / 'b.yaml'}: {EXTENDS}: a.yaml makes a cycle (a.yaml -> b.yaml -> a.yaml); "
        "a spec cannot extend itself, directly or through another"
    )
    itself = write(tmp_path / "self.yaml", "extends: ./self.yaml\n")
    assert "makes a cycle (self.yaml -> self.yaml)" in refusal(itself)
    missing = write(tmp_path / "missing.yaml", "extends: nope.yaml\n")
    assert refusal(missing) == (
        f"{missing}: {EXTENDS}: nope.yaml: no such spec file ({tmp_path / 'nope.yaml'})"
    )
    listed = write(tmp_path / "listed.yaml", "extends: [a.yaml]\n")
    assert "extends: expected the path of a spec file, relative to this spec's folder" in (
        refusal(listed)
    )


def test_set_overrides_apply_before_the_checks(tmp_path: Path) -> None:
    spec = load_spec(
        QUICKSTART,
        [
            "budget.target_steps=200",
            "pool=[syn_kind, syn_stance]",
            "hyperparameters.learning_rate={loguniform: [1.0e-4, 1.0e-3]}",
            "data.max_train_examples=",
            "seed=7",
        ],
    )
    assert spec.budget.target_steps == 200 and spec.pool == ("syn_kind", "syn_stance")
    assert spec.hyperparameters["learning_rate"].values == (1.0e-4, 1.0e-3)
    assert spec.data.max_train_examples is None and spec.seed == 7
    source = read_spec(QUICKSTART, ["seed=7"])
    assert source.text.startswith(f"# the effective spec of {QUICKSTART} (--set seed)\n")
    assert parse_spec(yaml.safe_load(source.text)) == load_spec(QUICKSTART, ["seed=7"])
    assert read_spec(QUICKSTART).text == QUICKSTART.read_text()  # nothing changed: the file's own


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("budget.target_step=200", "unknown key 'budget.target_step' (did you mean 'target_steps"),
        ("hyperparameters.lr=0.01", "unknown hyperparameter 'lr' (did you mean 'learning_rate'?)"),
        ("seed=-1", "seed: -1 is outside 0 to 4294967295"),
        ("budget.target_steps", "--set budget.target_steps: expected KEY.PATH=VALUE, e.g."),
        ("budget..x=1", "--set budget..x=1: expected KEY.PATH=VALUE"),
        ("name.first=x", "--set name.first=x: name is 'quickstart' in the spec, not a mapping"),
        ("pool=[a, b", "--set pool=[a, b: the value is not valid YAML ("),
        ("extends=other.yaml", "--set extends=other.yaml: extends is read from the file"),
    ],
)
def test_a_wrong_override_is_one_line(override: str, expected: str) -> None:
    assert expected in refusal(QUICKSTART, override)


def test_set_through_the_cli_changes_the_plan_and_says_the_same_did_you_mean(
    tmp_path: Path,
) -> None:
    result = run_cli(
        "run",
        str(QUICKSTART),
        "--dry-run",
        "--set",
        "subsets.per_size=1",
        "--set",
        "subsets.sizes=[1, 9]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "stratified: 3 trials, sizes 1, 9" in result.stdout, result.stdout
    typo = run_cli("run", str(QUICKSTART), "--dry-run", "--set", "budget.grace=1", cwd=tmp_path)
    assert typo.returncode == 2
    assert typo.stderr.splitlines() == [
        f"xlt-search: error: {QUICKSTART}: unknown key 'budget.grace' (did you mean "
        "'grace_period_steps'?); budget takes: intermediate_steps, target_steps, "
        "report_every_steps, probe_steps, scheduler, grace_period_steps, reduction_factor, "
        "survivors_per_size"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", LOCAL, ids=[p.name for p in LOCAL])
def test_a_local_spec_extends_its_parent_and_writes_only_its_differences(path: Path) -> None:
    own = yaml.safe_load(path.read_text())
    parent_path = path.with_name(path.name.replace("_local", ""))
    assert own[EXTENDS] == parent_path.name
    parent = yaml.safe_load(parent_path.read_text())

    def same(mine: dict, theirs: dict, where: str) -> list[str]:
        found = []
        for key, value in mine.items():
            if isinstance(value, dict) and isinstance(theirs.get(key), dict):
                found += same(value, theirs[key], f"{where}{key}.")
            elif key in theirs and theirs[key] == value:
                found.append(f"{where}{key}")
        return found

    assert same({k: v for k, v in own.items() if k != EXTENDS}, parent, "") == []
    assert path.read_text().splitlines()[0] == f"# xlt-search run search_spaces/{path.name}"
