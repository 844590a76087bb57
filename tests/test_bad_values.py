"""Values a spec can hold that no search can run with: each is refused in one line, with the
value and the fix, exit status 2, before anything is written (no results folder, no MLflow store,
no Ray).

One table: a few cases go through the real CLI (`run --dry-run` and `run`), the rest through
`load_spec` on the written file, the path every command reads a spec by.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from processes import run_cli
from search_specs import search_spec

from xlt_search.errors import UserError
from xlt_search.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"

Edit = Callable[[str], str]  # the spec's YAML text -> the text with the bad value


def setting(dotted: str, value: object) -> Edit:
    """An edit that sets the key `dotted` (a.b.c) to `value`."""

    def edit(text: str) -> str:
        raw = node = yaml.safe_load(text)
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
        return yaml.safe_dump(raw)

    return edit


def appending(line: str) -> Edit:
    """An edit that adds `line` at the end of the file (a second top-level key, say)."""
    return lambda text: text + line + "\n"


def renaming(dotted: str, new: str) -> Edit:
    """An edit that renames the key `dotted` to `new`, in the same mapping."""

    def edit(text: str) -> str:
        raw = node = yaml.safe_load(text)
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[new] = node.pop(last)
        return yaml.safe_dump(raw)

    return edit


def adding_pool_task(text: str) -> str:
    raw = yaml.safe_load(text)
    raw["pool"].append(raw["pool"][1])
    return yaml.safe_dump(raw)


ALLOWED = "use letters, digits, '.', '_' and '-', starting with a letter or digit"

# case: (edit, a fragment of the error line, the CLI commands that also check it)
BAD_VALUES: dict[str, tuple[Edit, str, tuple[str, ...]]] = {
    "a batch of no example": (
        setting("hyperparameters.per_device_batch_size", 0),
        "hyperparameters.per_device_batch_size: 0 is no batch; it must be at least 1",
        (),
    ),
    "a learning rate of 0": (
        setting("hyperparameters.learning_rate", 0),
        "hyperparameters.learning_rate: 0.0 cannot run; it must be > 0 (e.g. learning_rate:",
        ("run --dry-run", "run"),
    ),
    "a negative learning rate": (
        setting("hyperparameters.target_learning_rate", {"uniform": [-1.0e-3, 1.0e-3]}),
        "hyperparameters.target_learning_rate: -0.001 cannot run; it must be > 0",
        (),
    ),
    "a robust training no one knows": (
        setting("hyperparameters.robust_training", {"choice": ["none", "rs-rp"]}),
        "hyperparameters.robust_training: 'rs-rp' (did you mean 'rs_rp'?) is not one of none, "
        "rs_rp, adversarial, rs_da",
        (),
    ),
    "rs_da with no synonyms file": (
        setting("hyperparameters.robust_training", {"grid": ["none", "rs_da"]}),
        "hyperparameters.robust_training: rs_da swaps words for synonyms, and data.synonyms "
        "names no file; set data.synonyms: PATH",
        ("run --dry-run",),
    ),
    "rs_da with a synonyms file that is not there": (
        lambda text: setting("data.synonyms", "nowhere/neighbours.json")(
            setting("hyperparameters.robust_training", "rs_da")(text)
        ),
        "data.synonyms: nowhere/neighbours.json is not a file; give the path of the neighbours",
        (),
    ),
    "no augmented copy": (
        setting("hyperparameters.robust_copies", {"choice": [0, 3]}),
        "hyperparameters.robust_copies: 0 copies train on nothing; use at least 1",
        (),
    ),
    "a robust perturbation of size 0": (
        setting("hyperparameters.robust_epsilon", 0),
        "hyperparameters.robust_epsilon: 0.0 cannot run; it must be > 0 (e.g. robust_epsilon: 0.1)",
        (),
    ),
    "a task sampler's temperature of 0": (
        setting("hyperparameters.sampler_temperature", 0),
        "hyperparameters.sampler_temperature: 0.0 cannot run; it must be > 0",
        (),
    ),
    "a negative seed": (
        setting("seed", -1),
        "seed: -1 is outside 0 to 4294967295 (2**32 - 1), the seeds numpy's and Optuna's random "
        "generators take; use a seed in that range",
        ("run --dry-run",),
    ),
    "a seed past 2**32 - 1": (setting("seed", 2**70), f"seed: {2**70} is outside 0 to ", ()),
    "training seeds past 2**32 - 1": (
        lambda text: setting("seeds", 3)(setting("seed", 2**32 - 2)(text)),
        "seeds: 3 training seeds from seed 4294967294 run past 4294967295 (2**32 - 1); lower seed",
        (),
    ),
    "an empty name": (
        setting("name", ""),
        f"name: '' cannot name the search's results folder (it is empty); {ALLOWED}",
        ("run --dry-run",),
    ),
    "a name that climbs out of the storage path": (
        setting("name", "../../etc/evil"),
        "name: '../../etc/evil' cannot name the search's results folder (it holds '/', a path "
        f"separator); {ALLOWED}, at most 100 characters",
        ("run",),
    ),
    "a name with a folder in it": (
        setting("name", "my search/v1"),
        "name: 'my search/v1' cannot name the search's results folder (it holds '/'",
        (),
    ),
    "a name with a space": (
        setting("name", "my search"),
        "name: 'my search' cannot name the search's results folder (it holds ' ')",
        (),
    ),
    "a name of '..'": (setting("name", "a..b"), "(it holds '..')", ()),
    "a name with a backslash": (setting("name", "a\\b"), "(it holds '\\\\', a path separator)", ()),
    "a name with a NUL byte": (setting("name", "a\0b"), "(it holds a NUL byte)", ()),
    "a hidden name": (setting("name", ".quick"), "(it starts with '.')", ()),
    "a name that reads as an option": (setting("name", "-quick"), "(it starts with '-')", ()),
    "an overlong name": (setting("name", "q" * 101), "(it is 101 characters long)", ()),
    "a NUL byte in the storage path": (
        setting("storage_path", "runs\0x"),
        "storage_path: 'runs\\x00x' holds a NUL byte, which no path can hold; remove it",
        ("run --dry-run", "run"),
    ),
    "a NUL byte in the data cache": (
        setting("data.cache_dir", "cache\0"),
        "data.cache_dir: 'cache\\x00' holds a NUL byte",
        (),
    ),
    "sequences of 10**12 tokens": (
        setting("data.max_seq_length", 10**12),
        "data.max_seq_length: 1000000000000 is past the cap of 8192 tokens",
        (),
    ),
    "10**30 intermediate steps": (
        setting("budget.intermediate_steps", 10**30),
        f"budget.intermediate_steps: {10**30} is past the cap of 1,000,000,000 optimizer steps",
        (),
    ),
    "10**30 target steps": (
        setting("budget.target_steps", 10**30),
        "budget.target_steps: 1000000000000000000000000000000 is past the cap",
        (),
    ),
    "reports further apart than the whole budget": (
        setting("budget.report_every_steps", 5000),
        "budget.report_every_steps: 5000 is past a trial's whole budget (1200 budget_steps), so "
        "no trial would report before its end; use at most 1200",
        (),
    ),
    "a rung off the report grid": (
        setting("budget.grace_period_steps", 700),
        "budget.grace_period_steps: 700 is off the report grid: trials report every 800 "
        "budget_steps, so the rung would compare scores reported later; use a multiple of "
        "report_every_steps (800)",
        ("run --dry-run",),
    ),
    "a negative grace period": (
        setting("budget.grace_period_steps", -800),
        "budget.grace_period_steps: -800; use 0 (the first report) or a positive number",
        (),
    ),
    "probes longer than the target's fine-tune": (
        setting("budget.probe_steps", 401),
        "budget.probe_steps: 401 is more than a target's whole fine-tune (target_steps 400); a "
        "probe is a short fine-tune: use at most 400",
        (),
    ),
    "a key given twice": (
        appending("seed: 3"),
        "key 'seed' is given twice, at lines ",
        ("run --dry-run",),
    ),
    "a nested key given twice": (
        lambda text: text.replace("  max_seq_length: 32\n", "  max_seq_length: 32\n" * 2),
        "key 'max_seq_length' is given twice, at lines ",
        (),
    ),
    "one target written where the list belongs": (
        setting("targets", "syn_nli"),
        "targets: expected a list of target tasks, got the string 'syn_nli'; write "
        "targets: [syn_nli]",
        ("run --dry-run",),
    ),
    "a mixed language the target lacks": (
        setting("targets", [{"task": "syn_nli", "mixed_languages": ["en", "de"]}]),
        "targets: syn_nli has no 'de' data; its languages are en, xc1, xc2, xf1, xf2",
        ("run --dry-run",),
    ),
    "one mixed language": (
        setting("targets", [{"task": "syn_nli", "mixed_languages": ["xf1"]}]),
        "targets: syn_nli.mixed_languages: 1 language; list at least 2 languages, each once",
        (),
    ),
    "a mixed language twice": (
        setting("targets", [{"task": "syn_nli", "mixed_languages": ["en", "xf1", "en"]}]),
        "targets: syn_nli.mixed_languages: en is listed twice; list at least 2 languages",
        (),
    ),
    "mixed languages on a tagging target": (
        setting("targets", [{"task": "udpos", "mixed_languages": ["en", "de"]}]),
        "targets: udpos.mixed_languages: udpos is a tagging task with no two parts to put in two "
        "languages; remove mixed_languages",
        (),
    ),
    "a pool task twice": (
        adding_pool_task,
        "pool: syn_topic_choice is listed twice; list each task once",
        (),
    ),
    "lr for learning_rate": (
        renaming("hyperparameters.learning_rate", "lr"),
        "hyperparameters: unknown hyperparameter 'lr' (did you mean 'learning_rate'?)",
        (),
    ),
    "a named pool misspelt": (
        setting("pool", "phang2021"),
        "pool: 'phang2021' is not a named pool (did you mean 'phang2020'?)",
        (),
    ),
    "a control misspelt": (
        setting("subsets.controls", ["word_shufle"]),
        "subsets.controls[0]: 'word_shufle' is not one of word_shuffle (did you mean "
        "'word_shuffle'?)",
        ("run --dry-run",),
    ),
    "a control twice": (
        setting("subsets.controls", ["word_shuffle", "word_shuffle"]),
        "subsets.controls: a control is listed twice; list each control once",
        (),
    ),
    "a control without the baseline": (
        lambda text: setting("subsets.controls", ["word_shuffle"])(
            setting("subsets.baseline", False)(text)
        ),
        "subsets.controls: a control is read against the no-intermediate baseline, which this "
        "search does not run; set subsets.baseline: true",
        ("run",),
    ),
    "a word-shuffle control on a span target": (
        lambda text: setting("subsets.controls", ["word_shuffle"])(
            setting("targets", [{"task": "syn_nli"}, {"task": "xquad"}])(text)
        ),
        "subsets.controls: word_shuffle cannot shuffle the span target xquad's training data "
        "(its answers' offsets would point elsewhere)",
        (),
    ),
    "500 million random trials": (
        setting("subsets", {"sampler": "random", "num_samples": 5 * 10**8}),
        "subsets.num_samples: 500000000 is past the cap of 10,000 trials",
        (),
    ),
}


def assert_nothing_written(work: Path, spec: Path) -> None:
    assert list(work.iterdir()) == [spec], "something was written"  # no runs/, mlflow.db, Ray
    assert not (work.parent / "etc").exists()  # a name that climbs out wrote nowhere either


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_value_that_cannot_run_is_refused_in_one_line_before_anything(
    tmp_path: Path, case: str
) -> None:
    edit, expected, commands = BAD_VALUES[case]
    spec = tmp_path / "spec.yaml"
    spec.write_text(edit(yaml.safe_dump(search_spec("quickstart", tmp_path, base=QUICKSTART))))
    with pytest.raises(UserError) as refused:
        load_spec(spec)
    line = str(refused.value)
    assert "\n" not in line and expected in line, line
    for command in commands:
        verb, *options = command.split()
        result = run_cli(
            verb,
            str(spec),
            *options,
            cwd=tmp_path,
            env={"RAY_TMPDIR": str(tmp_path / "raytmp"), "MLFLOW_TRACKING_URI": ""},
        )
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert result.stderr.splitlines() == [f"xlt-search: error: {line}"], command
        assert_nothing_written(tmp_path, spec)
