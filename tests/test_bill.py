"""The bill before a search: its arithmetic on a model whose FLOPs are known, the device table,
the refusal of a GPU share too small for the model, and the CLI's dry run printing it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import datasets
import pytest
from processes import run_cli
from search_specs import search_spec
from transformers import XLMRobertaConfig, XLMRobertaModel

from xlt_search.errors import SpecError, UserError
from xlt_search.search import make_plan
from xlt_search.search.bill import (
    DEFAULT_BATCH_SIZE,
    EVAL_BATCH_MULTIPLIER,
    Counts,
    ModelShape,
    SplitTokens,
    flops_per_token,
    make_bill,
    split_tokens,
    trial_work,
)
from xlt_search.search.devices import CPU, Device, get_device, load_devices
from xlt_search.spec import parse_spec
from xlt_search.trial import EVAL_BATCH_MULTIPLIER as TRIAL_EVAL_BATCH_MULTIPLIER
from xlt_search.trial import TrialConfig

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"

# d = 8, L = 2, f = 16: per layer 4 d^2 + 2 d f + 9 d + f = 256 + 256 + 72 + 16 = 600, N = 1,200.
TINY = dict(
    hidden_size=8,
    num_hidden_layers=2,
    intermediate_size=16,
    num_attention_heads=2,
    vocab_size=50,
    max_position_embeddings=20,
    type_vocab_size=1,
)
TINY_N = 1_200
TINY_ALL = TINY_N + (50 + 20 + 1) * 8 + 2 * 8 + 8 * 8 + 8  # embeddings, their norm, the pooler

# XLM-R large's config (FacebookAI/xlm-roberta-large).
LARGE = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    intermediate_size=4096,
    num_attention_heads=16,
    vocab_size=250_002,
    max_position_embeddings=514,
    type_vocab_size=1,
)


def test_parameters_of_a_tiny_config_are_counted_by_hand_and_by_torch() -> None:
    shape = ModelShape.from_config(TINY)
    assert shape.non_embedding_parameters == TINY_N
    assert shape.parameters == TINY_ALL
    model = XLMRobertaModel(XLMRobertaConfig(**TINY))
    named = dict(model.named_parameters())
    assert sum(p.numel() for p in named.values()) == TINY_ALL
    without = sum(
        p.numel() for n, p in named.items() if "embeddings" not in n and "pooler" not in n
    )
    assert without == TINY_N


def test_xlm_r_large_has_its_published_size() -> None:
    shape = ModelShape.from_config(LARGE)
    assert 559e6 < shape.parameters < 561e6  # "XLM-R large: 560M parameters"
    assert 302e6 < shape.non_embedding_parameters < 303e6


def test_flops_per_token_are_6n_plus_attention() -> None:
    # training: 6 N + 12 L S d = 7,200 + 12 x 2 x 10 x 8 = 9,120; forward: a third
    assert flops_per_token(TINY_N, 2, 8, 10, training=True) == 9_120
    assert flops_per_token(TINY_N, 2, 8, 10, training=False) == 3_040
    assert ModelShape.from_config(TINY).flops(1_000, 10, training=True) == 9_120_000


def test_the_bill_counts_as_the_trial_batches() -> None:
    assert TrialConfig.__dataclass_fields__["per_device_batch_size"].default == DEFAULT_BATCH_SIZE
    assert TRIAL_EVAL_BATCH_MULTIPLIER == EVAL_BATCH_MULTIPLIER


def small_spec(**changes) -> object:
    raw = search_spec(
        "bill",
        pool=["syn_sentiment", "syn_kind"],
        targets=[{"task": "syn_nli", "languages": ["en", "xc1"]}],
        subsets={"sampler": "grid", "sizes": [1], "baseline": True},
        hyperparameters={"per_device_batch_size": 4},
        budget={
            "intermediate_steps": 100,
            "target_steps": 50,
            "report_every_steps": 50,
            "probe_steps": 10,
            "scheduler": "fifo",
        },
        max_concurrent_trials=2,
        resources={"cpu": 1, "gpu": 0},
    )
    raw.update(changes)
    return parse_spec(raw)


# rows, sequences, tokens: 10 tokens a row in syn_sentiment, 20 in syn_nli's training data,
# dev sets of 20 rows of 15 tokens
SPLITS = {
    "syn_sentiment/train/en": SplitTokens(10, 10, 100),
    "syn_kind/train/en": SplitTokens(10, 10, 300),
    "syn_nli/train/en": SplitTokens(10, 10, 200),
    "syn_nli/validation/en": SplitTokens(20, 20, 300),
    "syn_nli/validation/xc1": SplitTokens(20, 20, 300),
}


def test_a_trials_steps_evaluations_and_flops_by_hand() -> None:
    spec, shape = small_spec(), ModelShape.from_config(TINY)
    counts = Counts(spec, SPLITS, ())
    work = trial_work(spec, shape, counts, ("syn_sentiment",))
    # 100 intermediate steps of 4 rows of 10 tokens; 2 probes (at 50 and 100) of 10 steps and
    # 50 target steps, 4 rows of 20 tokens
    assert work.train_steps == 100 + 2 * 10 + 50
    assert work.train_tokens == 100 * 4 * 10 + 70 * 4 * 20
    assert work.train_flops == 4_000 * flops_per_token(TINY_N, 2, 8, 10, True) + 5_600 * (
        flops_per_token(TINY_N, 2, 8, 20, True)
    )
    # evaluated at the 2 probes and the one report of the target phase (budget_steps 150), each
    # time both dev sets: 2 batches of 16 rows each, 300 tokens of 15 a sequence
    assert work.eval_batches == 3 * 2 * 2
    assert work.eval_tokens == 3 * 600
    assert work.eval_flops == 1_800 * flops_per_token(TINY_N, 2, 8, 15, False)
    # the baseline: no intermediate phase, no probe; reports at 50 (the end)
    baseline = trial_work(spec, shape, counts, ())
    assert (baseline.train_steps, baseline.eval_batches) == (50, 2 * 2)
    # two tasks weigh the same: 10 and 30 tokens a row, 20 on average
    both = trial_work(spec, shape, counts, ("syn_kind", "syn_sentiment"))
    assert both.train_tokens == 100 * 4 * 20 + 70 * 4 * 20


def test_a_split_not_prepared_counts_its_rows_at_max_seq_length() -> None:
    spec = small_spec()
    counts = Counts(spec, {}, ("syn_nli/train/en",))
    assert counts.train("syn_sentiment") == SplitTokens(1, 1, spec.data.max_seq_length)
    assert counts.dev("syn_nli", ("en", "xc1")) == []
    copa = counts.train("syn_copa")  # a multiple-choice row holds a sequence per choice
    assert copa.sequences == spec.registry["syn_copa"].num_labels
    assert copa.tokens == copa.sequences * spec.data.max_seq_length


DEVICE = Device(
    "test",
    "measured",
    "a test device",
    flops_per_s=1e9,
    step_overhead_s=0.01,
    eval_batch_overhead_s=0.002,
    trial_overhead_s=3.0,
    search_overhead_s=20.0,
)


def test_a_searchs_time_disk_and_memory_by_hand() -> None:
    spec, shape = small_spec(), ModelShape.from_config(TINY)
    counts = Counts(spec, SPLITS, ())
    plan = make_plan(spec)
    bill = make_bill(plan, shape, counts, DEVICE)
    works = [trial_work(spec, shape, counts, s) for s in plan.subsets]
    assert bill.trials == 3 and bill.at_once == min(2, os.cpu_count())
    each = [
        3.0 + w.train_steps * 0.01 + w.eval_batches * 0.002 + (w.train_flops + w.eval_flops) / 1e9
        for w in works
    ]
    assert bill.seconds == pytest.approx(20.0 + max(sum(each) / bill.at_once, max(each)))
    assert bill.flops == pytest.approx(sum(w.train_flops + w.eval_flops for w in works))
    # one target: its fine-tune's weights and AdamW moments, and the intermediate encoder's
    assert bill.checkpoint_bytes == TINY_ALL * (12 + 4)
    # two models on the device during a probe, 16 bytes a parameter each
    assert bill.state_bytes == 2 * 16 * TINY_ALL
    # fp32 on a CPU: L s b h (34 + 5 a s / h) x 2, at s = 32, b = 4
    assert bill.activation_bytes == round(2 * 32 * 4 * 8 * (34 + 5 * 2 * 32 / 8) * 2)


def test_trials_packed_on_a_gpu_share_its_rate() -> None:
    spec = small_spec(resources={"cpu": 1, "gpu": 0.5}, max_concurrent_trials=0)
    shape, counts = ModelShape.from_config(TINY), Counts(spec, SPLITS, ())
    gpu = dataclasses.replace(DEVICE, memory_gb=10.0)
    bill = make_bill(make_plan(spec), shape, counts, gpu)
    assert bill.at_once == 2 and bill.share_bytes == 5e9
    works = [trial_work(spec, shape, counts, s) for s in make_plan(spec).subsets]
    fixed = sum(3.0 + w.train_steps * 0.01 + w.eval_batches * 0.002 for w in works)
    flops = sum(w.train_flops + w.eval_flops for w in works)
    assert bill.seconds == pytest.approx(20.0 + fixed / 2 + flops / 1e9)


def test_a_gpu_share_that_cannot_hold_the_model_is_refused_in_one_line() -> None:
    # XLM-R large, two targets: 2 x 16 bytes x 560M = 17.9 GB; a quarter of 40 GB is 10 GB
    spec = small_spec(
        resources={"cpu": 1, "gpu": 0.25},
        targets=[{"task": "syn_nli"}, {"task": "syn_copa"}],
    )
    shape = ModelShape.from_config(LARGE)
    a100 = get_device("A100-40GB")
    with pytest.raises(SpecError) as refused:
        make_bill(make_plan(spec), shape, Counts(spec, SPLITS, ()), a100)
    message = str(refused.value)
    assert "\n" not in message and "resources.gpu: 0.25 of A100-40GB (10 GB)" in message
    assert "17.9 GB" in message and "at least 0.5" in message
    fits = make_bill(
        make_plan(
            dataclasses.replace(spec, resources=dataclasses.replace(spec.resources, gpu=0.5))
        ),
        shape,
        Counts(spec, SPLITS, ()),
        a100,
    )
    assert fits.state_bytes <= fits.share_bytes == 20e9
    with pytest.raises(SpecError, match="at least 1,"):  # 17.9 GB of the L4's 24
        make_bill(make_plan(spec), shape, Counts(spec, SPLITS, ()), get_device("L4"))
    three = dataclasses.replace(  # 3 x 16 bytes x 560M = 26.9 GB: no share of an L4 holds it
        spec, targets=(*spec.targets, dataclasses.replace(spec.targets[0], task="syn_lead"))
    )
    with pytest.raises(SpecError, match=r"L4 \(24 GB\) cannot hold .* price it --on a larger"):
        make_bill(make_plan(three), shape, Counts(three, SPLITS, ()), get_device("L4"))


def test_a_device_the_spec_does_not_ask_for_is_refused() -> None:
    spec = small_spec()
    with pytest.raises(SpecError, match="resources.gpu is 0: the search would not run on H100"):
        make_bill(
            make_plan(spec),
            ModelShape.from_config(TINY),
            Counts(spec, SPLITS, ()),
            get_device("h100"),
        )


def test_the_device_table() -> None:
    devices = load_devices()
    assert {"cpu", "H100", "A100-40GB", "A100-80GB", "H200", "L4"} <= set(devices)
    cpu = devices[CPU]
    assert cpu.source == "measured" and not cpu.shared and cpu.memory_gb is None
    assert min(cpu.flops_per_s, cpu.step_overhead_s, cpu.search_overhead_s) > 0
    h100 = devices["H100"]
    assert h100.source == "assumed" and h100.shared and "MFU 30%" in h100.described
    assert h100.flops_per_s == pytest.approx(989e12 * 0.30)
    assert load_devices("fp32")["H100"].flops_per_s == pytest.approx(67e12 * 0.30)
    with pytest.raises(UserError) as unknown:
        get_device("H1000")
    assert str(unknown.value).startswith("--on H1000: unknown device; known: cpu, H100, ")


def test_split_tokens_reads_rows_sequences_and_tokens(tmp_path: Path) -> None:
    pairs = datasets.Dataset.from_dict({"input_ids": [[0, 5, 2], [0, 5, 6, 7, 2]]})
    choices = datasets.Dataset.from_dict({"input_ids": [[[0, 5, 2], [0, 6, 7, 2]]] * 3})
    pairs.save_to_disk(str(tmp_path / "pairs"))
    choices.save_to_disk(str(tmp_path / "choices"))
    assert split_tokens(tmp_path / "pairs") == SplitTokens(2, 2, 8)
    found = split_tokens(tmp_path / "choices")
    assert found == SplitTokens(3, 6, 21) and found.per_row == 7 and found.seq_length == 3.5


def test_the_dry_run_prints_the_bill(tmp_path: Path) -> None:
    result = run_cli("run", str(QUICKSTART), "--dry-run", "--price-per-hour", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    bill = result.stdout[result.stdout.index("bill ") :]
    assert "26 trials, 2 at a time" in bill
    for line in ("compute ", "time ", "money ", "disk ", "memory "):
        assert f"\n  {line}" in bill, bill
    assert "on cpu, measured" in bill and "x 2 per hour = " in bill
    assert "N = 66,944 parameters without the embeddings" in bill  # the tiny encoder's


def test_the_dry_run_on_a_gpu(tmp_path: Path) -> None:
    gpu = ("--set", "resources.gpu=0.25")
    result = run_cli("run", str(QUICKSTART), "--dry-run", *gpu, "--on", "A100-80GB", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "assumed: 312 TFLOP/s peak x MFU 30%" in result.stdout
    assert "of a share of 20 GB: fits" in result.stdout
    unnamed = run_cli("run", str(QUICKSTART), "--dry-run", *gpu, cwd=tmp_path)
    assert unnamed.returncode == 0 and "name the GPU: --on NAME (H100, " in unnamed.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--dry-run", "--on", "H1000"), "--on H1000: unknown device; known: cpu, H100, "),
        (("--dry-run", "--on", "H100"), "resources.gpu is 0: the search would not run on H100"),
        (("--on", "cpu"), "--on and --price-per-hour price a dry run: add --dry-run"),
        (("--dry-run", "--price-per-hour", "-1"), "--price-per-hour -1: give a price of 0"),
    ],
)
def test_a_bad_bill_option_is_one_line(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    result = run_cli("run", str(QUICKSTART), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xlt-search: error: ") and expected in lines[0]
    assert not (tmp_path / "mlflow.db").exists()
