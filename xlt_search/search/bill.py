"""The bill of a search before it runs: its compute, time, money, checkpoint disk and memory.

`xlt-search run SPEC --dry-run` prints it under the plan. Compute is counted from the model's
config and the prepared data's token counts: a training token costs 6 N FLOPs (N the encoder's
parameters without its embeddings, which are looked up, not multiplied) plus 12 L S d for the
attention scores and their weighting (L layers, S the sequence's length, d the width), forward and
backward; an evaluated token a third of that. Time is that compute over a device's FLOP rate,
plus what each optimizer step, evaluation batch, trial and search costs whatever its size, all
from the device table (`devices.yaml`: the CPU row measured by benchmarks/device_rates.py, the GPU
rows a datasheet peak times an assumed MFU). Every trial is counted to its whole budget: ASHA's
cuts make a search cheaper, never dearer. No Ray, and neither torch nor the spec's parser at
import.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xlt_search.errors import SpecError, UserError
from xlt_search.search.devices import CPU, Device, get_device, load_devices

if TYPE_CHECKING:
    from xlt_search.search.plan import SearchPlan
    from xlt_search.spec import SearchSpec

# trial.TrialConfig's per_device_batch_size when the spec sets none, and trial.scoring's evaluation
# batches in training batches (tests/test_bill.py holds both to the trial's own)
DEFAULT_BATCH_SIZE = 32
EVAL_BATCH_MULTIPLIER = 4
_ADAMW_BYTES = 16  # per parameter on the device: fp32 weight, gradient and AdamW's two moments
_CHECKPOINT_BYTES = 12  # per parameter in a checkpoint: the weight and the two moments


def flops_per_token(
    non_embedding_parameters: int, layers: int, width: int, seq_length: float, training: bool
) -> float:
    """FLOPs of one token: 2 N + 4 L S d forward; three times that forward and backward."""
    forward = 2 * non_embedding_parameters + 4 * layers * seq_length * width
    return 3 * forward if training else forward


@dataclass(frozen=True)
class ModelShape:
    """What the bill reads of a BERT-shaped encoder's config (XLM-R, mBERT and their kin)."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    vocab_size: int
    positions: int
    type_vocab_size: int = 1

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> ModelShape:
        """From a config's dict (`config.json`, or `PretrainedConfig.to_dict()`)."""
        return cls(
            hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_hidden_layers"]),
            intermediate_size=int(config["intermediate_size"]),
            num_heads=int(config["num_attention_heads"]),
            vocab_size=int(config["vocab_size"]),
            positions=int(config.get("max_position_embeddings") or 0),
            type_vocab_size=int(config.get("type_vocab_size") or 0),
        )

    @property
    def non_embedding_parameters(self) -> int:
        """N: per layer the four attention projections, the feed-forward pair and two norms."""
        d, f = self.hidden_size, self.intermediate_size
        return self.num_layers * (4 * d * d + 2 * d * f + 9 * d + f)

    @property
    def parameters(self) -> int:
        """Every parameter: N, the embeddings and their norm, and the pooler."""
        d = self.hidden_size
        embeddings = (self.vocab_size + self.positions + self.type_vocab_size) * d + 2 * d
        return self.non_embedding_parameters + embeddings + d * d + d

    def flops(self, tokens: float, seq_length: float, training: bool) -> float:
        """FLOPs of `tokens` tokens in sequences of `seq_length` (`flops_per_token`)."""
        per_token = flops_per_token(
            self.non_embedding_parameters, self.num_layers, self.hidden_size, seq_length, training
        )
        return tokens * per_token


@dataclass(frozen=True)
class SplitTokens:
    """A prepared split's size: its rows, the sequences they hold (a multiple-choice row holds one
    per choice), and their tokens (special tokens in, as truncated)."""

    rows: int
    sequences: int
    tokens: int

    @property
    def per_row(self) -> float:
        return self.tokens / self.rows if self.rows else 0.0

    @property
    def seq_length(self) -> float:
        return self.tokens / self.sequences if self.sequences else 0.0


@dataclass(frozen=True)
class TrialWork:
    """What one trial computes: optimizer steps, evaluation batches, and their FLOPs."""

    train_steps: int
    train_tokens: float
    train_flops: float
    eval_batches: int
    eval_tokens: float
    eval_flops: float

    def seconds(self, device: Device, packed: int = 1) -> float:
        """Its time on `device`, sharing the device's FLOP rate with `packed` trials if shared."""
        rate = device.flops_per_s / (packed if device.shared else 1)
        return (
            device.trial_overhead_s
            + self.train_steps * device.step_overhead_s
            + self.eval_batches * device.eval_batch_overhead_s
            + (self.train_flops + self.eval_flops) / rate
        )


class Counts:
    """The token counts the bill reads, by `SplitRequest.key`; a training split not prepared yet
    counts every row at `max_seq_length`, a dev set not prepared yet counts nothing."""

    def __init__(
        self, spec: SearchSpec, splits: Mapping[str, SplitTokens], missing: tuple[str, ...]
    ) -> None:
        self.spec, self.splits, self.missing = spec, splits, missing

    def train(self, task: str) -> SplitTokens:
        found = self.splits.get(f"{task}/train/en")
        if found is not None:
            return found
        declared = self.spec.registry[task]
        sequences = declared.num_labels if declared.kind == "multiple_choice" else 1
        return SplitTokens(1, sequences, sequences * self.spec.data.max_seq_length)

    def target_train(self, task: str) -> SplitTokens:
        """A target's training data: its training tasks' (trial.training_tasks: XCOPA's SIQA then
        COPA) rows, sequences and tokens together."""
        declared = self.spec.registry[task]
        found = [self.train(key) for key in declared.train_tasks or (task,)]
        return SplitTokens(*(sum(column) for column in zip(*map(astuple, found), strict=True)))

    def dev(self, task: str, languages: tuple[str, ...]) -> list[SplitTokens]:
        keys = (f"{task}/validation/{lang}" for lang in languages)
        return [self.splits[key] for key in keys if key in self.splits]


def trial_work(
    spec: SearchSpec, shape: ModelShape, counts: Counts, subset: tuple[str, ...]
) -> TrialWork:
    """The steps, evaluation batches and FLOPs of a trial of `subset` (empty: the baseline, no
    intermediate phase), to its whole budget: its intermediate steps, at each report in them a
    probe per target (`probe_steps` and an evaluation), its target steps and their evaluations."""
    from xlt_search.search.plan import target_configs

    budget, batch = spec.budget, _mean(spec.values_of("per_device_batch_size", DEFAULT_BATCH_SIZE))
    targets = [t for t in target_configs(spec) if t.fine_tuned]
    steps, tokens, flops = 0, 0.0, 0.0

    def train(count: int, per_row: float, seq_length: float) -> None:
        nonlocal steps, tokens, flops
        steps, tokens = steps + count, tokens + count * batch * per_row
        flops += shape.flops(count * batch * per_row, seq_length, training=True)

    if subset:  # the subset's tasks weigh the same: the sampler's shares are not counted
        mixed = [counts.train(task) for task in subset]
        per_row = _mean([s.per_row for s in mixed])
        train(budget.intermediate_steps, per_row, _mean([s.seq_length for s in mixed]))
    probes = budget.intermediate_steps // budget.report_every_steps if subset else 0
    start = budget.intermediate_steps if subset else 0
    end = start + budget.target_steps * len(targets)
    # a report every report_every_steps budget_steps of the target phase, and one at its end
    reports = end // budget.report_every_steps - start // budget.report_every_steps
    reports += 1 if end % budget.report_every_steps else 0
    eval_batches, eval_tokens, eval_flops = 0, 0.0, 0.0
    for target in targets:
        split = counts.target_train(target.task)
        train(probes * budget.probe_steps + budget.target_steps, split.per_row, split.seq_length)
        for dev in counts.dev(target.task, target.languages):
            passes = probes + reports
            eval_batches += passes * math.ceil(dev.rows / (EVAL_BATCH_MULTIPLIER * batch))
            eval_tokens += passes * dev.tokens
            eval_flops += passes * shape.flops(dev.tokens, dev.seq_length, training=False)
    return TrialWork(steps, tokens, flops, eval_batches, eval_tokens, eval_flops)


def _mean(values: tuple[float, ...] | list[float]) -> float:
    return sum(values) / len(values)


@dataclass(frozen=True)
class Bill:
    """A search's bill on a device (None: compute and disk only, the GPU not named)."""

    shape: ModelShape
    device: Device | None
    trials: int
    at_once: int
    flops: float
    train_tokens: float
    eval_tokens: float
    seconds: float | None
    checkpoint_bytes: int  # one trial's checkpoint (each trial keeps one)
    state_bytes: int  # on a trial's device: its models' weights, gradients and AdamW states
    activation_bytes: int  # and the activations of its largest batch
    share_bytes: float | None  # a GPU trial's share of its device's memory
    missing: tuple[str, ...]  # the splits not prepared yet


def make_bill(plan: SearchPlan, shape: ModelShape, counts: Counts, device: Device | None) -> Bill:
    """Price `plan` on `device`: every trial to its whole budget, as many at once as the spec
    and one device (one GPU, or this machine's cores) allow. A GPU fraction that cannot hold a
    trial's models is refused (SpecError), as is a device the spec's resources do not ask for."""
    spec = plan.spec
    gpu = spec.resources.gpu
    if device is not None and device.shared != (gpu > 0):
        raise SpecError(
            f"resources.gpu is {gpu:g}: the search would not run on {device.name}; "
            + ("price it --on a GPU, or set resources.gpu=0" if gpu else "set resources.gpu")
            + " (--set resources.gpu=...)"
        )
    pool = spec.pool
    if plan.subsets is None:  # optuna: any subset; each trial counted with the whole pool's mix
        subsets = [pool] * plan.num_trials
    else:
        subsets = [*plan.subsets, *[()] * len(plan.controls)] * spec.seeds * spec.grid_points
    works = [trial_work(spec, shape, counts, subset) for subset in subsets]
    slots = math.floor(1 / gpu) if gpu else math.floor((os.cpu_count() or 1) / spec.resources.cpu)
    at_once = max(1, min(slots, spec.max_concurrent_trials or slots, len(works)))
    seconds = None
    if device is not None:
        each = [work.seconds(device, at_once) for work in works]
        seconds = device.search_overhead_s + max(sum(each) / at_once, max(each))

    fine_tuned = len(spec.fine_tuned_targets)
    probes = spec.budget.intermediate_steps >= spec.budget.report_every_steps and bool(pool)
    models = max(fine_tuned, 2 if probes else 1)
    batch = max(spec.values_of("per_device_batch_size", DEFAULT_BATCH_SIZE))
    sequences = max(counts.train(task).sequences / counts.train(task).rows for task in pool)
    s, h = spec.data.max_seq_length, shape.hidden_size
    # Korthikanti et al. 2022: s b h (34 + 5 a s / h) bytes of 16-bit activations a layer
    per_layer = s * batch * sequences * h * (34 + 5 * shape.num_heads * s / h)
    bf16 = spec.precision == "bf16" or (spec.precision == "auto" and gpu > 0)
    activations = round(shape.num_layers * per_layer * (1 if bf16 else 2))
    states = models * _ADAMW_BYTES * shape.parameters
    share = gpu * device.memory_gb * 1e9 if device is not None and device.memory_gb else None
    if share is not None and states > share:
        whole, held = device.memory_gb * 1e9, f"a trial's {models} model(s) with their gradients"
        if states > whole:
            raise SpecError(
                f"resources.gpu: {device.name} ({_bytes(whole)}) cannot hold {held} and AdamW "
                f"states ({_bytes(states)}); price it --on a larger GPU"
            )
        need = next(f for f in (1 / n for n in range(8, 0, -1)) if f * whole >= states)
        raise SpecError(
            f"resources.gpu: {gpu:g} of {device.name} ({_bytes(share)}) cannot hold {held} "
            f"and AdamW states ({_bytes(states)}); give resources.gpu at least {need:.3g}, "
            "or a larger GPU"
        )
    return Bill(
        shape=shape,
        device=device,
        trials=len(works),
        at_once=at_once,
        flops=sum(w.train_flops + w.eval_flops for w in works),
        train_tokens=sum(w.train_tokens for w in works),
        eval_tokens=sum(w.eval_tokens for w in works),
        seconds=seconds,
        checkpoint_bytes=shape.parameters * max(_CHECKPOINT_BYTES * fine_tuned + 4, 12),
        state_bytes=states,
        activation_bytes=activations,
        share_bytes=share,
        missing=counts.missing,
    )


def describe_bill(bill: Bill, price_per_hour: float | None = None) -> str:
    """The bill as the lines `xlt-search run --dry-run` prints under the plan."""
    shape, device = bill.shape, bill.device
    lines = [
        f"bill        {bill.trials} trials, {bill.at_once} at a time, each to its whole budget "
        "(ASHA's cuts only lower it)",
        f"  compute   {bill.flops:.3g} FLOP: {bill.train_tokens:.3g} training tokens x 6 N "
        f"+ attention, {bill.eval_tokens:.3g} evaluated x 2 N + attention "
        f"(N = {shape.non_embedding_parameters:,} parameters without the embeddings, "
        f"{shape.parameters:,} in all)",
    ]
    if bill.missing:
        lines.append(
            f"  data      {len(bill.missing)} splits not prepared yet ({', '.join(bill.missing[:3])}"
            f"{', ...' if len(bill.missing) > 3 else ''}): their training rows counted at "
            "max_seq_length, their dev sets left out; `xlt-search prepare SPEC` measures them"
        )
    if device is None or bill.seconds is None:
        lines.append(
            f"  time      name the GPU: --on NAME ({', '.join(k for k in load_devices() if k != CPU)})"
        )
    else:
        hours = bill.seconds / 3600
        lines += [
            f"  time      {_duration(bill.seconds)} wall on {device.described}",
            f"  money     {hours:.3g} device-hours"
            + (
                f" x {price_per_hour:g} per hour = {hours * price_per_hour:.2f}"
                if price_per_hour is not None
                else " (--price-per-hour P prices them)"
            ),
        ]
    lines.append(
        f"  disk      {_bytes(bill.checkpoint_bytes)} of checkpoint per trial, "
        f"{_bytes(bill.checkpoint_bytes * bill.trials)} in all (each trial keeps one)"
    )
    memory = bill.state_bytes + bill.activation_bytes
    of_share = ""
    if bill.share_bytes is not None:
        fits = "fits" if memory <= bill.share_bytes else "may not fit: lower per_device_batch_size"
        of_share = f", of a share of {_bytes(bill.share_bytes)}: {fits}"
    lines.append(
        f"  memory    {_bytes(memory)} per trial: {_bytes(bill.state_bytes)} of weights, "
        f"gradients and AdamW states, {_bytes(bill.activation_bytes)} of activations at "
        f"max_seq_length{of_share}"
    )
    return "\n".join(lines)


def _bytes(count: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count:.0f} B"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def split_tokens(folder: str | Path) -> SplitTokens:
    """A prepared split's rows, sequences and tokens, read from its Arrow files."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = datasets.load_from_disk(str(folder)).data.table.column("input_ids")
    rows = len(ids)
    if pa.types.is_list(ids.type.value_type):  # multiple choice: a sequence per choice
        ids = pc.list_flatten(ids)
    return SplitTokens(rows, len(ids), int(pc.sum(pc.list_value_length(ids)).as_py() or 0))


def read_counts(spec: SearchSpec) -> tuple[ModelShape, Counts]:
    """The model's shape (its config) and the token counts of every split the bill reads that is
    in the data cache; nothing is tokenized (`prepare_search_data`'s `cached_only`)."""
    from xlt_search.search.driver import prepare_search_data

    model, data = prepare_search_data(spec, cached_only=True)  # imports the hub's libraries
    from transformers import AutoConfig

    shape = ModelShape.from_config(AutoConfig.from_pretrained(model).to_dict())
    needed = [f"{key}/train/en" for key in spec.pool]
    for target in spec.fine_tuned_targets:
        task = spec.registry[target.task]
        needed += [f"{key}/train/en" for key in task.train_tasks or (target.task,)]
        languages = target.languages or task.languages
        needed += [f"{target.task}/validation/{lang}" for lang in languages]
    found = {key: split_tokens(data.splits[key]) for key in needed if key in data.splits}
    return shape, Counts(spec, found, tuple(key for key in needed if key not in found))


def bill_for(plan: SearchPlan, on: str | None = None, price_per_hour: float | None = None) -> str:
    """What `xlt-search run --dry-run [--on NAME] [--price-per-hour P]` prints under the plan:
    `on` names a device of the table (default: the CPU when the spec asks for no GPU)."""
    spec = plan.spec
    if price_per_hour is not None and not price_per_hour >= 0:
        raise UserError(f"--price-per-hour {price_per_hour:g}: give a price of 0 or more")
    if on is None and spec.resources.gpu == 0:
        on = CPU
    device = get_device(on, spec.precision) if on is not None else None
    try:
        shape, counts = read_counts(spec)
    except UserError as error:  # e.g. a hub model not on this machine and the hub out of reach
        return f"bill        not priced: {error}"
    return describe_bill(make_bill(plan, shape, counts, device), price_per_hour)
