"""The shipped real-model specs: each validates, names registered tasks, and dry-runs to its plan.

Dry runs only: nothing is trained or downloaded (HF_HUB_OFFLINE=1), and nothing is written.
"""

from __future__ import annotations

import math
import shlex
import shutil
from pathlib import Path

import pytest
from processes import run_cli

from xlt_search.spec import SearchSpec, load_spec
from xlt_search.tasks import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in (ROOT / "search_spaces").glob("*.yaml") if p.name != "quickstart.yaml")
FULL = [p for p in SPECS if not p.stem.endswith("_local")]
LARGE, BASE = "FacebookAI/xlm-roberta-large", "FacebookAI/xlm-roberta-base"

# (trials, budget_steps per trial) of the plans as designed; a spec not listed here is checked
# against the counts derived from its subsets and budget alone.
PLANS = {  # each with the no-intermediate baseline
    "x_stilts.yaml": (11, 20000 + 3000 * 8),  # grid over sizes 1 and 9: 9 + 1
    "x_stilts_local.yaml": (11, 600 + 300 * 2),
    "scaling_xcopa_xnli.yaml": (26, 20000 + 3000 * 2),  # 3 per size 1..8, the one of size 9
    "scaling_xcopa_xnli_local.yaml": (10, 600 + 300 * 2),
    "families_3_vs_9.yaml": (10, 20000 + 3000 * 3),  # 8 of size 3, the one of size 9
    "families_3_vs_9_local.yaml": (6, 600 + 300 * 2),
    "mixed_languages.yaml": (26, 20000 + 3000 * 3),  # scaling_xcopa_xnli's, one more target
    "mixed_languages_local.yaml": (10, 600 + 300 * 3),
    "robust_training.yaml": (18, 20000 + 3000 * 2),  # (2 + 2 + 1 + baseline) x 3 kinds
    "robust_training_local.yaml": (12, 600 + 300 * 2),  # (1 + 1 + 1 + baseline) x 3 kinds
    "translate_train.yaml": (6, 20000 + 3000 * 2),  # (mnli_translated + baseline) x 3 languages
    "translate_train_local.yaml": (6, 600 + 300 * 2),
    "parallel_data.yaml": (8, 20000 + 3000 * 2),  # every subset of 3 tasks, and the baseline
    "parallel_data_local.yaml": (8, 600 + 300 * 2),
    "guided_xcopa_xnli.yaml": (40, 20000 + 3000 * 2),  # guided: no baseline
    "guided_xcopa_xnli_local.yaml": (20, 600 + 300 * 2),
    # 2 per size 1..8, the one of size 9, and the baseline, each with 3 seeds; 4 targets
    "reasoning_robustness.yaml": ((2 * 8 + 1 + 1) * 3, 20000 + 3000 * 4),
    "reasoning_robustness_local.yaml": ((5 + 1) * 3, 600 + 300 * 4),
}


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def derived_trials(spec: SearchSpec) -> int:
    """The trials the sampler gives, counted from the spec with binomials, with the baseline,
    for every seed."""
    n, sampler = len(spec.pool), spec.subsets.sampler
    if sampler == "grid":
        subsets = sum(math.comb(n, k) for k in spec.sizes)
    elif sampler == "stratified":
        subsets = sum(min(spec.subsets.per_size, math.comb(n, k)) for k in spec.sizes)
    else:
        subsets = spec.subsets.num_samples
    grid = math.prod(len(d.values) for d in spec.hyperparameters.values() if d.kind == "grid")
    return (subsets + spec.runs_baseline) * spec.seeds * grid


def derived_budget(spec: SearchSpec) -> int:
    """Intermediate steps plus target steps for every target that is fine-tuned (not retrieval)."""
    fine_tuned = [t for t in spec.targets if spec.registry[t.task].kind != "retrieval"]
    return spec.budget.intermediate_steps + spec.budget.target_steps * len(fine_tuned)


@pytest.mark.parametrize("path", SPECS, ids=ids(SPECS))
def test_spec_loads_with_registered_tasks(path: Path) -> None:
    spec = load_spec(path)
    lines = path.read_text().splitlines()
    assert lines[0] == f"# xlt-search run search_spaces/{path.name}"
    assert lines[1].startswith("# ")  # what the spec is for
    assert spec.name == path.stem and spec.experiment == spec.name
    for key in (*spec.pool, *(t.task for t in spec.targets)):
        assert key in REGISTRY, key
    if "ccg" in spec.pool:  # CCGbank has no public copy: the spec points ccg at the user's files
        sources = spec.registry["ccg"].sources
        assert sources and all(s.data_files and not s.is_hub for s in sources)


@pytest.mark.parametrize("path", SPECS, ids=ids(SPECS))
def test_spec_size_matches_its_kind(path: Path) -> None:
    spec = load_spec(path)
    if path.stem.endswith("_local"):
        assert spec.model == BASE
        assert spec.data.max_train_examples is not None
        assert spec.data.max_train_examples <= 10_000
        assert 0 < spec.resources.gpu < 1  # trials share one GPU
        assert spec.data.max_seq_length <= 128
    else:
        assert spec.model == LARGE
        assert spec.resources.gpu >= 1  # large does not pack


@pytest.mark.parametrize("path", FULL, ids=ids(FULL))
def test_full_spec_has_a_local_version(path: Path) -> None:
    local = path.with_name(f"{path.stem}_local.yaml")
    assert local.is_file()
    full, reduced = load_spec(path), load_spec(local)
    assert reduced.pool == full.pool
    assert reduced.subsets.sampler == full.subsets.sampler
    assert reduced.budget.scheduler == full.budget.scheduler


@pytest.mark.parametrize("path", SPECS, ids=ids(SPECS))
def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, path: Path) -> None:
    spec = load_spec(path)
    trials, budget = derived_trials(spec), derived_budget(spec)
    if path.name in PLANS:
        assert (trials, budget) == PLANS[path.name]
    result = run_cli("run", str(path), "--dry-run", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"search      {spec.name}  (model {spec.model})"
    assert f"subsets     {spec.subsets.sampler}: {trials} trials, sizes " in result.stdout
    assert f"= {budget} budget_steps per trial" in result.stdout
    assert f"scheduler   {spec.budget.scheduler}" in result.stdout
    assert f"storage     {tmp_path.resolve() / spec.storage_path}" in lines
    assert f"mlflow      experiment '{spec.experiment}'" in result.stdout
    # priced, or (the hub model not on this machine, offline) saying why not
    assert "\nbill        " in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_robust_training_takes_rs_da_with_the_neighbours_file_its_comment_names(
    tmp_path: Path,
) -> None:
    """The command in robust_training.yaml's comment runs, with the neighbours file in place."""
    neighbours = tmp_path / "counterfitted_neighbors.json"
    shutil.copy(ROOT / "tests" / "data" / "robust_xlt" / neighbours.name, neighbours)
    spec = ROOT / "search_spaces" / "robust_training.yaml"
    lines = [line.removeprefix("#").strip() for line in spec.read_text().splitlines()]
    first = lines.index("xlt-search run search_spaces/robust_training.yaml \\")
    last = next(i for i in range(first, len(lines)) if not lines[i].endswith("\\"))
    command = shlex.split(" ".join(line.rstrip("\\") for line in lines[first : last + 1]))
    assert command[:3] == ["xlt-search", "run", "search_spaces/robust_training.yaml"]
    overrides = [part.replace("/data/", f"{tmp_path}/") for part in command[3:]]
    result = run_cli("run", str(spec), "--dry-run", *overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "subsets     stratified: 24 trials" in result.stdout
