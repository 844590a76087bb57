"""Every script in benchmarks/ runs in its smallest form and prints its table.

No figure is checked for speed here: the figures come from full runs on an idle machine
(benchmarks/README.md). These runs keep the scripts working as the code under them changes, and
check what their tables must say whatever the machine.
"""

from __future__ import annotations

import os
import pstats
import re
from pathlib import Path

import pytest
from processes import run_python
from search_specs import E2E_SPEC, SMALL_BUDGET, search_spec, write_spec

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(script: str, work: Path, *args: str) -> str:
    """`python benchmarks/<script> args` in `work`, with every cache and store under it; its stdout."""
    env = {
        **os.environ,
        "XLT_SEARCH_CACHE": str(work / "xlt-cache"),
        "HF_HOME": str(work / "hf"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
        "MPLCONFIGDIR": str(work / "matplotlib"),
        "RAY_ADDRESS": "",
    }
    result = run_python(str(BENCHMARKS / script), *args, cwd=work, env=env, timeout_s=900)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the `|`-separated row that starts with `first_cell`."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row '{first_cell}' in:\n{output}")


def number(cell: str) -> float:
    return float(re.match(r"[\d,.]+", cell).group().replace(",", ""))


def test_throughput(tmp_path: Path) -> None:
    output = run_benchmark("throughput.py", tmp_path, "--steps", "20", "--warmup-steps", "5")
    ours = table_row(output, "ours (pipeline loop)")
    padded = table_row(output, "Trainer as run_glue.py: padded to max_seq_length")
    per_batch = table_row(output, "Trainer, padded per batch")
    for row in (ours, padded, per_batch):
        assert number(row[1]) > 0, row
    # length-grouped, per-batch padding against padding every example to max_seq_length
    assert number(ours[3]) < number(padded[3]), (ours, padded)
    assert number(table_row(output, "run_trial's call to its first optimizer step")[1]) > 0
    for kind in ("rs_rp", "adversarial", "rs_da"):  # time per step, against plain's
        assert number(table_row(output, kind)[1]) > 0
    assert table_row(output, "none")[2] == "1.00"
    # rs_da trains on 3 copies of every example: its cost is in its data
    assert table_row(output, "rs_da")[3].endswith("(3x)") and table_row(output, "none")[3].endswith(
        "(1x)"
    )


def test_data_prep(tmp_path: Path) -> None:
    output = run_benchmark("data_prep.py", tmp_path, "--spec", str(E2E_SPEC), "--warm-runs", "1")
    first = number(table_row(output, "first search: empty cache, datasets' raw cache empty")[1])
    second = number(table_row(output, "second search, run 1: same cache")[1])
    assert second < first, output


def test_planted_relatedness(tmp_path: Path) -> None:
    output = run_benchmark(
        "planted_relatedness.py", tmp_path, "--intermediate-steps", "20", "--target-steps", "20"
    )
    for condition in ("none", "helpful", "neutral", "conflicting", "all nine"):
        assert 0 <= number(table_row(output, condition)[-2]) <= 1  # the score


@pytest.mark.e2e  # its packed trials are Ray tasks: it starts Ray
def test_gpu_benchmark_smoke_runs_on_the_cpu(tmp_path: Path) -> None:
    output = run_benchmark(
        "gpu_mfu.py",
        tmp_path,
        *"--device cpu --tiny --steps 3 --warmup-steps 1".split(),
        "--packing",
        "1",
        "2",
    )
    rows = [line.split() for line in output.splitlines()]
    assert {row[0] for row in rows if len(row) > 2 and row[0] in ("no", "yes")} == {"no", "yes"}
    packed = {row[0]: row[1] for row in rows if row and row[0] in ("1", "2")}
    assert packed == {"1": "1.00", "2": "0.50"}, output


def asha_spec(work: Path) -> Path:
    budget = {**SMALL_BUDGET, "scheduler": "asha", "grace_period_steps": 20}
    return write_spec(work, search_spec("asha-smoke", work, pool_size=3, budget=budget))


@pytest.mark.e2e
def test_asha_vs_fifo(tmp_path: Path) -> None:
    output = run_benchmark("asha_vs_fifo.py", tmp_path, "--spec", str(asha_spec(tmp_path)))
    rows = {row[0]: row for row in (line.split() for line in output.splitlines()) if row}
    asha, fifo = rows["asha"], rows["fifo"]
    assert asha[1] == fifo[1] == "3", output  # trials
    assert fifo[2] == "3", output  # FIFO completes every trial
    assert int(asha[3]) <= int(fifo[3]), output  # steps
    assert "ASHA's steps to the target / FIFO's whole search" in output


@pytest.mark.e2e
def test_peer_hf_trainer(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, search_spec("peer-smoke", tmp_path, pool_size=2))
    output = run_benchmark(
        "peer_hf_trainer.py",
        tmp_path,
        "--spec",
        str(spec),
        *"--intermediate-steps 20 --target-steps 20".split(),
    )
    ours, peer = table_row(output, "ours"), table_row(output, "peer")
    assert ours[5] == peer[5] == "2", output  # trials: one subset of each size
    assert 0 < number(ours[-2]) <= 1 and 0 < number(peer[-2]) <= 1, output  # mean scores
    assert "ours/peer wall time: whole search" in output


@pytest.mark.e2e  # a search through the CLI
def test_pretrained_encoder(tmp_path: Path) -> None:
    output = run_benchmark(
        "pretrained_encoder.py", tmp_path, "--intermediate-steps", "10", "--target-steps", "30"
    )
    baseline = table_row(output, "baseline")
    assert number(baseline[1]) > number(baseline[3].split("/")[0])  # English above chance
    assert "learning check: the target was learned" in output


@pytest.mark.e2e
def test_exhaustive_table_and_its_replays(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, search_spec("table-smoke", tmp_path, pool_size=2))
    table = tmp_path / "table.csv"
    output = run_benchmark(
        "exhaustive_table.py", tmp_path, "--spec", str(spec), "--seeds", "2", "--out", str(table)
    )
    assert "trials       8: 4 subsets x 2 seeds" in output, output
    assert "s a trial" in output and "report " in output, output
    output = run_benchmark("replay.py", tmp_path, str(table), "--replays", "3")
    assert "2 tasks, 4 subsets" in output, output
    for sampler in ("random", "stratified", "optuna", "guided"):
        assert f"\n{sampler}  |  asha  |  " in output, output
        row = output.split(f"\n{sampler}  |  fifo  |  ")[1].split("|")
        assert number(row[0].strip()) <= 3, output  # FIFO finds it among the 3 non-empty subsets
    assert "guided's median trials to the best / random's" in output


def test_replays_on_a_planted_landscape(tmp_path: Path) -> None:
    output = run_benchmark("replay.py", tmp_path, "--planted", "5", "--replays", "5")
    assert "table planted: 5 tasks, 32 subsets" in output, output
    assert "seed-to-seed sd 0.00" in output, output  # the planted noise, 0.005
    guided = output.split("\nguided  |  fifo  |  ")[1].split("|")
    assert number(guided[0].strip()) <= 31, output  # the median replay finds it among the 31
    assert "fifo: guided's median trials to the best / random's: " in output
    # t2's planted effect is 0, so the best ({t0}) ties with {t0, t2}; the ranking is resolved
    assert "2 non-empty subset(s) lie within it of the best" in output, output
    assert "alone agree at Spearman 1.00" in output, output
    assert "the task ranking is not resolved" not in output, output


def test_replays_on_a_landscape_with_nothing_to_find_say_so(tmp_path: Path) -> None:
    output = run_benchmark(
        "replay.py", tmp_path, "--planted", "5", "--flat", "--replays", "2", "--samplers", "random"
    )
    assert "warning: the best subset is not resolved: " in output, output
    assert "warning: the task ranking is not resolved: " in output, output


def test_task_priors(tmp_path: Path) -> None:
    table = BENCHMARKS / "tables" / "exhaustive_6.csv"
    tiny = ["--seeds", "1", "--batches", "1", "--warmup-steps", "4", "--eval-batches", "1"]
    output = run_benchmark("task_priors.py", tmp_path, str(table), *tiny, "--lookahead-steps", "1")
    assert "table's exact Shapley values: syn_pole_tags +0.0480, " in output, output
    for prior in ("gradient", "lookahead"):
        summary = output.split(f"\n{prior}  |  mean of 1 seeds  |  ")[1].splitlines()[0]
        rhos = [float(r) for r in summary.split(": ")[1].split("  |")[0].split(" / ")]
        assert len(rhos) == 3 and all(-1 <= r <= 1 for r in rhos), summary  # 2 targets, mean


@pytest.mark.e2e  # a two-node Ray cluster and an MLflow server
def test_orchestration_at_three_sizes(tmp_path: Path) -> None:
    profile = tmp_path / "loop.prof"
    output = run_benchmark(
        "orchestration.py", tmp_path, "--trials", "12", "--scaling", "--profile", str(profile)
    )
    assert table_row(output, "trials")[1:] == ["3", "6", "12"], output
    assert table_row(output, "trials in MLflow")[1:] == ["3", "6", "12"], output
    calls = [number(cell) for cell in table_row(output, "MLflow callback calls")[1:]]
    # a start, a report each (2 or 3) and an end per trial
    assert [c >= 4 * n for c, n in zip(calls, (3, 6, 12), strict=True)] == [True] * 3, output
    # The callback only queues: a callback that logged itself would see each of its
    # requests complete inside it (a busy machine may pause a call past one, rarely).
    waited = [number(cell) for cell in table_row(output, "requests inside a callback call")[1:]]
    assert all(w <= c / 10 for w, c in zip(waited, calls, strict=True)), output
    assert all(number(cell) > 0 for cell in table_row(output, "report s")[1:]), output
    assert "from 3 to 12 trials (4x):" in output and "\nfaster than linear: " in output
    assert "goals at 12 trials: driver CPU " in output, output
    # the largest search's loop under cProfile: Tune's controller stepped in it
    stepped = [f for f in pstats.Stats(str(profile)).stats if f[2] == "step"]
    assert any(f[0].endswith("tune_controller.py") for f in stepped), stepped
