"""`xlt-search prepare`, the checks `run` makes before Ray starts, tokenizer coverage and
`xlt-search encoder`, through the real CLI on the toy world's tasks declared in a spec."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TOY_WORDS, ToyWorld, fill, toy_word
from processes import free_port, run_cli
from search_specs import search_spec, write_spec

from xlt_search.synthetic.encoder import save_encoder


def xlt(*args: str, work: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI in `work`, with Ray's temporary folder under it (`assert_nothing_started` looks
    there)."""
    return run_cli(*args, cwd=work, env={"RAY_TMPDIR": str(work / "raytmp"), **(env or {})})


def toy_spec(world: ToyWorld, work: Path, model: str, **data: object) -> dict:
    """A spec over the toy world's tasks, declared in its `tasks:` section, as plain data."""
    tasks = {}
    for key, task in world.tasks.items():
        declaration = json.loads(json.dumps(dataclasses.asdict(task)))
        declaration.pop("key")
        tasks[key] = declaration
    languages = {
        code: {"name": lang.name, "family": lang.family, "script": lang.script}
        for code, lang in world.languages.items()
        if code != "en"
    }
    return search_spec(
        "toy",
        work,
        model=model,
        pool=["toy_nli", "toy_tags"],
        targets=[{"task": "toy_copa"}],
        subsets={"sampler": "stratified", "per_size": 1, "baseline": False},
        hyperparameters={},
        budget={
            "intermediate_steps": 4,
            "target_steps": 4,
            "report_every_steps": 4,
            "probe_steps": 2,
            "scheduler": "fifo",
        },
        max_concurrent_trials=0,
        data={"max_seq_length": 32, "cache_dir": str(work / "cache"), **data},
        tasks=tasks,
        languages=languages,
    )


def assert_nothing_started(work: Path) -> None:
    assert not (work / "raytmp" / "ray").exists(), "Ray was started"
    assert not (work / "mlflow.db").exists() and not (work / "runs").exists()
    assert not (work / "xlt_runs").exists()


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "xlt-search: error:" in line]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]
    assert errors[0].startswith("xlt-search: error: ")
    return errors[0]


def rows(stdout: str) -> dict[str, list[str]]:
    """The coverage table's rows, by split: the lines after its header that have its columns."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("split  "))
    table = {}
    for line in lines[start + 1 :]:
        cells = line.split()
        if len(cells) != 5 or cells[0].count("/") != 2:
            break
        table[cells[0]] = cells[1:]
    return table


def test_the_libraries_progress_bars_show_only_with_verbose(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, toy_spec(toy_world, tmp_path, str(toy_world.encoder)))
    quiet = xlt("prepare", str(spec), work=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "%|" not in quiet.stderr and "examples/s" not in quiet.stderr
    shutil.rmtree(tmp_path / "cache")  # tokenized again, through the same datasets calls
    verbose = xlt("prepare", "--verbose", str(spec), work=tmp_path)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "%|" in verbose.stderr  # datasets' bars, as the library prints them
    assert rows(verbose.stdout) == rows(quiet.stdout)  # the same coverage, either way


def test_prepare_prints_the_coverage_and_a_second_one_reuses_it(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, toy_spec(toy_world, tmp_path, str(toy_world.encoder)))
    first = xlt("prepare", str(spec), work=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    table = rows(first.stdout)
    assert set(table) == {
        "toy_nli/train/en",
        "toy_tags/train/en",
        "toy_copa/train/en",
        "toy_copa/validation/en",
        "toy_copa/validation/ta",
        "toy_copa/validation/tb",
    }
    assert table["toy_nli/train/en"] == ["300", "0.0%", "1.00", "0.0%"]
    assert all(row[1] == "0.0%" for row in table.values())
    header = next(line for line in first.stdout.splitlines() if line.startswith("split"))
    assert header.split() == [
        "split",
        "examples",
        "unknown",
        "tokens/word",
        "truncated",
        "at",
        "32",
    ]
    assert "6 splits ready in" in first.stdout and "warning" not in first.stderr
    assert first.stdout.count("tokenized ") == 6
    assert_nothing_started(tmp_path)
    again = xlt("prepare", str(spec), work=tmp_path)
    assert again.returncode == 0 and "tokenized " not in again.stdout  # read from the cache
    assert rows(again.stdout) == table


def test_a_tokenizer_that_cannot_read_the_tasks_stops_the_search(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    # What a user saw: the synthetic encoder on a task set of one's own read every word as <unk>
    # ("w66 q928592 w37" -> [0, 3, 3, 3, 2]) and the search trained at chance, without a word.
    raw = toy_spec(toy_world, tmp_path, "synthetic:tiny-xlmr")
    stopped = xlt("prepare", str(write_spec(tmp_path, raw)), work=tmp_path)
    line = one_error_line(stopped)
    assert line.startswith(
        "xlt-search: error: toy_nli/train/en (and 5 more splits) is 100.0% unknown tokens for "
        "the tokenizer of synthetic:tiny-xlmr: the model cannot read this data;"
    )
    assert "xlt-search encoder SPEC DIR" in line and "data.allow_unknown_tokens: true" in line
    assert all(row[1] == "100.0%" for row in rows(stopped.stdout).values())
    run = xlt("run", str(write_spec(tmp_path, raw)), work=tmp_path)
    assert one_error_line(run) == line
    assert_nothing_started(tmp_path)

    raw["data"]["allow_unknown_tokens"] = True
    allowed = xlt("prepare", str(write_spec(tmp_path, raw)), work=tmp_path)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    (warning,) = [line for line in allowed.stderr.splitlines() if "warning" in line]
    assert warning.startswith(
        "xlt-search: warning: 6 of 6 splits are more than 5% unknown tokens for the tokenizer of "
        "synthetic:tiny-xlmr: toy_nli/train/en 100.0%,"
    )


def test_a_few_unknown_words_warn_and_mostly_unknown_ones_stop(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    english = tmp_path / "english-encoder"  # knows the English words only
    save_encoder([toy_word(i, "en") for i in range(TOY_WORDS)], english, hidden_size=32)
    raw = toy_spec(toy_world, tmp_path, str(english))
    raw["targets"] = [{"task": "toy_copa", "languages": ["en", "ta"]}]
    warned = xlt("prepare", str(write_spec(tmp_path, raw)), work=tmp_path)
    assert warned.returncode == 0, warned.stderr[-2000:]
    table = rows(warned.stdout)
    assert table["toy_copa/validation/en"][1] == "0.0%"
    share = float(table["toy_copa/validation/ta"][1].rstrip("%"))
    assert 10 < share < 30  # Toy A has its own word for a fifth of the vocabulary
    (warning,) = [line for line in warned.stderr.splitlines() if "warning" in line]
    assert (
        f"1 of 5 splits are more than 5% unknown tokens for the tokenizer of {english}" in warning
    )
    assert f"toy_copa/validation/ta {share:.1f}%" in warning

    raw["targets"] = [{"task": "toy_copa"}]  # Toy B shares a fifth of its words with English
    line = one_error_line(xlt("prepare", str(write_spec(tmp_path, raw)), work=tmp_path))
    assert line.startswith("xlt-search: error: toy_copa/validation/tb is ")


def _typo_column(raw: dict) -> None:
    raw["tasks"]["toy_nli"]["columns"]["text_a"] = "premis"


def _missing_file(raw: dict) -> None:
    files = raw["tasks"]["toy_nli"]["sources"][0]["data_files"]
    files["train"] = files["train"].replace("train.en", "trian.en")


def _two_labels(raw: dict) -> None:
    raw["tasks"]["toy_nli"]["num_labels"] = 2  # its data has three


BAD_INPUTS: dict[str, tuple[Callable[[dict, Path], None], str, bool]] = {
    # case: (the change to a good spec, what the line says, caught by --dry-run too)
    "model folder missing": (
        lambda raw, work: raw.update(model=str(work / "no-such-encoder")),
        "model: the folder {work}/no-such-encoder does not exist; point model at a folder "
        "written by save_pretrained",
        True,
    ),
    "folder is not a model": (
        lambda raw, work: raw.update(model=str(work)),
        "model: {work} is not a model folder (it has no config.json and no weights "
        "(model.safetensors or pytorch_model.bin) and no tokenizer",
        True,
    ),
    "tracking URI": (
        lambda raw, work: raw.update(mlflow={"tracking_uri": "garbage://x"}),
        "tracking URI 'garbage://x': MLflow has no tracking store for 'garbage://'",
        True,
    ),
    "missing data file": (
        lambda raw, work: _missing_file(raw),
        "task toy_nli: cannot read its data files (",
        False,
    ),
    "typo'd column": (
        lambda raw, work: _typo_column(raw),
        "task toy_nli: column 'premis' (for 'text_a') is not in the data; it has ",
        False,
    ),
    "label outside num_labels": (
        lambda raw, work: _two_labels(raw),
        "task toy_nli: toy_nli/train/en has labels up to 2 (",
        False,
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_stops_prepare_and_run_before_ray_in_one_line(
    toy_world: ToyWorld, tmp_path: Path, case: str
) -> None:
    change, expected, cheap = BAD_INPUTS[case]
    raw = toy_spec(toy_world, tmp_path, str(toy_world.encoder))
    change(raw, tmp_path)
    spec = write_spec(tmp_path, raw)
    expected = f"xlt-search: error: {expected.format(work=tmp_path)}"
    # `run` makes the checks `prepare` makes before Ray starts; those --dry-run catches too
    # (no tokenizing needed) are checked there instead of by a whole `run`
    for command in (["prepare"], ["run", "--dry-run"] if cheap else ["run"]):
        result = xlt(*command, str(spec), work=tmp_path)
        assert one_error_line(result).startswith(expected), (command, result.stderr)
        assert_nothing_started(tmp_path)


def test_a_hub_model_out_of_reach_is_one_line_at_once(toy_world: ToyWorld, tmp_path: Path) -> None:
    # online mode, an empty cache, and a hub that does not answer: a closed port on loopback
    hub = {
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
    }
    spec = write_spec(tmp_path, toy_spec(toy_world, tmp_path, "FacebookAI/xlm-roberta-base"))
    expected = (
        "model FacebookAI/xlm-roberta-base: not in this machine's Hugging Face cache "
        f"({tmp_path}/hf/hub) and the hub at {hub['HF_ENDPOINT']} does not answer ("
    )
    line = one_error_line(xlt("prepare", str(spec), work=tmp_path, env=hub))
    assert line.startswith(f"xlt-search: error: {expected}")
    assert_nothing_started(tmp_path)
    # the dry run prints its plan, and says why its bill is not priced
    dry = xlt("run", str(spec), "--dry-run", work=tmp_path, env=hub)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert f"bill        not priced: {expected}" in dry.stdout
    assert "Retrying" not in dry.stderr + dry.stdout  # the libraries' retries never began
    assert_nothing_started(tmp_path)

    # the same model in this machine's cache, in the hub's layout: read from there, no retries
    model = tmp_path / "hf" / "hub" / "models--FacebookAI--xlm-roberta-base"
    shutil.copytree(toy_world.encoder, model / "snapshots" / "0123abc")
    (model / "refs").mkdir()
    (model / "refs" / "main").write_text("0123abc")
    result = xlt("prepare", str(spec), work=tmp_path, env=hub)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"xlt-search: warning: the hub at {hub['HF_ENDPOINT']} does not answer (Connection "
        "refused): the model and the hub's datasets are read from this machine's cache "
        "(HF_HUB_OFFLINE=1)"
    ) in result.stderr
    assert "Retrying" not in result.stderr and "thrown" not in result.stderr, result.stderr


def test_the_tracking_uri_from_the_environment_is_checked_before_anything(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, toy_spec(toy_world, tmp_path, str(toy_world.encoder)))
    for command in (["prepare"], ["run", "--dry-run"]):
        result = xlt(*command, str(spec), work=tmp_path, env={"MLFLOW_TRACKING_URI": "garbage://x"})
        assert "MLflow has no tracking store for 'garbage://'" in one_error_line(result)
    assert_nothing_started(tmp_path)
    assert not (tmp_path / "cache").exists()


def test_an_encoder_of_the_specs_own_words_reads_every_split(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    from transformers import AutoModel, AutoTokenizer

    raw = toy_spec(toy_world, tmp_path, "synthetic:tiny-xlmr")  # the encoder ignores the model
    raw["data"]["max_seq_length"] = 200  # past the synthetic encoder's 126 positions
    out = tmp_path / "own-encoder"
    built = xlt(
        "encoder", str(write_spec(tmp_path, raw)), str(out), "--hidden-size", "16", work=tmp_path
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert f"and an encoder of hidden size 16 to {out}; set model: {out}" in built.stdout
    model, tokenizer = AutoModel.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert model.config.hidden_size == 16 and model.config.max_position_embeddings == 202
    words = {toy_word(i, lang) for lang in ("en", "ta", "tb") for i in range(TOY_WORDS)}
    assert set(tokenizer.get_vocab()) == words | {"<s>", "<pad>", "</s>", "<unk>", "<mask>"}
    assert f"wrote a tokenizer of {len(words)} words (from 6 splits)" in built.stdout

    raw["model"] = str(out)
    prepared = xlt("prepare", str(write_spec(tmp_path, raw)), work=tmp_path)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert len(rows(prepared.stdout)) == 6
    assert all(row[1] == "0.0%" for row in rows(prepared.stdout).values())
    assert "warning" not in prepared.stderr
    again = xlt("encoder", str(write_spec(tmp_path, raw)), str(out), work=tmp_path)
    assert "already exists and is not empty" in one_error_line(again)


def test_coverage_counts_truncation_and_leaves_unspaced_scripts_without_words(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    from xlt_search.data import SplitRequest, coverage, prepare_data
    from xlt_search.tasks.base import Language

    requests = [SplitRequest("toy_nli", "train", "en"), SplitRequest("toy_qa", "validation", "ta")]
    data = prepare_data(
        requests,
        str(toy_world.encoder),
        8,
        None,
        tmp_path,
        0,
        registry=toy_world.tasks,
        languages=toy_world.languages,
    )
    measured = coverage.load(data)
    nli, qa = measured["toy_nli/train/en"], measured["toy_qa/validation/ta"]
    dataset = data.load("toy_nli", "train", "en")
    longest = sum(len(ids) >= 8 for ids in dataset["input_ids"])
    assert nli.examples == len(dataset) and nli.truncated == longest > 0
    assert qa.examples == 60 and 0 < qa.truncated <= 60  # questions, not windows
    assert nli.unknown == 0 and nli.tokens == nli.words > 0
    as_thai = {**toy_world.languages, "ta": Language("ta", "Toy A", "toy-close", "Thai")}
    table = coverage.table(measured, as_thai, 8).splitlines()
    assert table[1].split()[3] == "1.00" and table[2].split()[3] == "-"
    assert (
        json.loads(coverage.to_json(measured, as_thai))["toy_qa/validation/ta"]["tokens_per_word"]
        is None
    )
    assert coverage.summary(measured).startswith("2 splits; unknown tokens at most 0.0%")


def test_labels_past_the_choices_or_the_tags_are_refused(toy_world: ToyWorld) -> None:
    import datasets

    from xlt_search.errors import UserError
    from xlt_search.preflight import check_labels

    copa = toy_world.tasks["toy_copa"]
    choices = datasets.Dataset.from_dict(
        {"context": ["a", "b"], "choices": [["x", "y"], ["x", "y"]], "label": [1, 2]}
    )
    with pytest.raises(UserError, match="1 examples of toy_copa/train/en have a label past"):
        check_labels(copa, choices, "toy_copa/train/en")
    tags = toy_world.tasks["toy_tags"]
    tagged = datasets.Dataset.from_dict({"tokens": [["w1", "w2"]], "tags": [[0, 5]]})
    with pytest.raises(UserError, match=r"has tags up to 5 \(1 outside the task's 3 labels"):
        check_labels(tags, tagged, "toy_tags/train/en")
    check_labels(tags, datasets.Dataset.from_dict({"tokens": [["w1"]], "tags": [[-1]]}), "ok")


@pytest.mark.e2e
def test_a_search_logs_the_coverage_on_its_parent_run(toy_world: ToyWorld, tmp_path: Path) -> None:
    import mlflow

    raw = toy_spec(toy_world, tmp_path, str(toy_world.encoder))
    raw.update(
        pool=["toy_nli"],
        subsets={"sampler": "stratified", "sizes": [1], "per_size": 1, "baseline": False},
        hyperparameters={"per_device_batch_size": 8},
        max_concurrent_trials=1,
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(  # Ray's own temporary folder: a socket path under tmp_path is too long
        "run",
        str(write_spec(tmp_path, raw)),
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
        timeout_s=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.index("truncated at 32") < result.stdout.index("[1/1] ")
    client = mlflow.MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("toy").experiment_id], "tags.`xlt.role` = 'search'"
    )
    assert parent.data.tags["xlt.coverage"].startswith("5 splits; unknown tokens at most 0.0%")
    path = client.download_artifacts(parent.info.run_id, "coverage.json", str(tmp_path))
    logged = json.loads(Path(path).read_text())
    assert set(logged) == {
        "toy_nli/train/en",
        "toy_copa/train/en",
        *(f"toy_copa/validation/{lang}" for lang in ("en", "ta", "tb")),
    }
    assert logged["toy_nli/train/en"]["examples"] == 300
    assert logged["toy_nli/train/en"]["unknown_share"] == 0.0


def test_a_full_disk_stops_prepare_in_one_line_and_a_second_one_finishes(
    toy_world: ToyWorld, tmp_path: Path, small_disk: Path
) -> None:
    raw = toy_spec(toy_world, tmp_path, str(toy_world.encoder))
    raw["data"]["cache_dir"] = str(small_disk / "cache")
    spec = write_spec(tmp_path, raw)
    filler = fill(small_disk)
    full = xlt("prepare", str(spec), work=tmp_path)
    line = one_error_line(full)
    assert line.startswith("xlt-search: error: the disk is full") and "No space left" in line
    filler.unlink()
    again = xlt("prepare", str(spec), work=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert rows(again.stdout), again.stdout
