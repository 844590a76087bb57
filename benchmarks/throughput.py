"""Training throughput, ours against Hugging Face's Trainer, and a trial's fixed overhead.

    python benchmarks/throughput.py --task syn_nli --steps 300 --warmup-steps 30

Both sides train the synthetic tiny encoder with the same head (`xlt_search.trial.MultiTaskModel`)
on the same task's prepared split (`prepare_data`, tokenized once), at the same batch size,
learning rate, weight decay and warmup, for the same optimizer steps, on `--threads` threads.
Ours is the pipeline's own loop (`trial.intermediate_phase` with that one task and no report):
batches drawn by `BatchStream` (a seeded shuffle each epoch, grouped by length within windows of 50
batches, padded to the batch's longest sequence), fused AdamW, gradient clipping. The Trainer side
gets the same split as a plain `datasets.Dataset` and the project's `collate` as its collator, in
three set-ups:

- as `run_glue.py`, the transformers example most researchers start from, sets it up: every batch
  padded to `max_seq_length` (its `pad_to_max_length` defaults to true), random order, the
  library's default attention;
- padded per batch like ours, random order (Trainer's default sampler), the default attention;
- the strongest Trainer we could set up: padded per batch, `train_sampling_strategy=
  "group_by_length"`, and the encoder loaded as ours loads it (`load_encoder`: eager attention on
  CPU). Against this one only the per-step overhead of the loops differs.

Throughput counts the real (non-padding) tokens the encoder trained on, from the step after
`--warmup-steps` to the last, over the time between those optimizer steps; the padded figure counts
every position the encoder computed. The fixed overhead is ours from `run_trial`'s call to its first
optimizer step (with the quickstart's targets, every language: the dev sets are collated first),
its parts timed alone, and the imports a new Tune worker makes before a trial can start; and
Trainer's from its construction to its first step. `--profile N` prints the N functions our loop
spends the most time in. Robust training's cost (trial/robust.py: random and adversarial
perturbations of the embeddings) is our loop's time per step with each, against plain training;
rs_da's steps are plain ones on its augmented copies (data/controls.py), so its cost is not per
step but in its data: the training examples it prepares (`robust_copies` times the real split's)
and their preparation, timed alone.
Everything is written under a temporary folder.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import torch
from common import isolate
from peer_hf_trainer import train_with_trainer
from torch.optim.optimizer import register_optimizer_step_pre_hook
from transformers import AutoModel, set_seed

from xlt_search.data import BatchStream, PreparedData, augmented, eval_batches, prepare_data
from xlt_search.names import DEFAULT_ROBUST_COPIES, ROBUST_TRAINING, RS_DA
from xlt_search.synthetic import SYNTHETIC_MODEL, ensure_suite, resolve_model, synonyms_file
from xlt_search.tasks.synthetic import ALL_LANGUAGES
from xlt_search.trial import (
    EVAL_BATCH_MULTIPLIER,
    MultiTaskModel,
    Phase,
    TargetConfig,
    TrialConfig,
    intermediate_phase,
    load_encoder,
    required_splits,
    run_trial,
)

TARGETS = ("syn_nli", "syn_copa")
MAX_SEQ_LENGTH = 32  # the quickstart's


class Meter:
    """Times every optimizer step (a global pre-step hook) and counts the tokens of every training
    forward pass of the encoder it watches."""

    def __init__(self) -> None:
        self.step_times: list[float] = []
        self.real: list[int] = []
        self.padded: list[int] = []
        self._handles: list[Any] = []

    def watch(self, encoder: torch.nn.Module) -> Meter:
        def on_forward(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            if module.training:
                mask = kwargs["attention_mask"]
                self.real.append(int(mask.sum()))
                self.padded.append(mask.numel())

        self._handles += [
            encoder.register_forward_pre_hook(on_forward, with_kwargs=True),
            register_optimizer_step_pre_hook(
                lambda *_: self.step_times.append(time.perf_counter())
            ),
        ]
        return self

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def rates(self, warmup: int) -> tuple[float, float, float]:
        """(real tokens/s, padded tokens/s, ms/step) over the steps after `warmup`."""
        seconds = self.step_times[-1] - self.step_times[warmup - 1]
        steps = len(self.step_times) - warmup
        return (
            sum(self.real[warmup:]) / seconds,
            sum(self.padded[warmup:]) / seconds,
            1000 * seconds / steps,
        )


def trial_config(args: argparse.Namespace, model: str, tasks: tuple[str, ...]) -> TrialConfig:
    return TrialConfig(
        model=model,
        tasks=tasks,
        targets=tuple(TargetConfig(task, ALL_LANGUAGES) for task in TARGETS),
        intermediate_steps=args.steps,
        target_steps=args.steps,
        report_every_steps=args.steps + 1,  # no report, no probe inside the measured loop
        probe_steps=0,
        learning_rate=args.learning_rate,
        per_device_batch_size=args.batch_size,
        num_threads=args.threads,
    )


def ours(config: TrialConfig, data: PreparedData) -> Meter:
    torch.manual_seed(config.seed)
    encoder = load_encoder(config.model)
    meter = Meter().watch(encoder)
    try:
        intermediate_phase(config, data, encoder, {}, lambda metrics, save_state: None)
    finally:
        meter.close()
    return meter


def with_trainer(
    config: TrialConfig,
    data: PreparedData,
    encoder: torch.nn.Module,
    pad_to_length: int | None,
    sampling: str,
) -> tuple[Meter, float]:
    """Trainer's run (`train_with_trainer`, the peer's), and the seconds from building it to its
    first optimizer step."""
    task = data.task(config.tasks[0])
    model = MultiTaskModel(encoder, {task.key: (task.kind, task.num_labels)})
    train = datasets.load_from_disk(str(data.path(task.key, "train", "en")))

    meter = Meter().watch(encoder)
    with tempfile.TemporaryDirectory(prefix="trainer-") as output_dir:
        started = time.perf_counter()
        try:
            train_with_trainer(
                model,
                task.key,
                task,
                train,
                config.intermediate_steps,
                config.learning_rate,
                config,
                data.pad_token_id,
                pad_to_length,
                output_dir,
                sampling,
            )
        finally:
            meter.close()
    return meter, meter.step_times[0] - started


class _FirstStep(Exception):
    """Raised at a trial's first optimizer step: the overhead is measured, the rest not needed."""


def seconds_to_first_step(run: Callable[[], Any]) -> float:
    def stop(*_: Any) -> None:
        raise _FirstStep

    handle = register_optimizer_step_pre_hook(stop)
    started = time.perf_counter()
    try:
        run()
    except _FirstStep:
        return time.perf_counter() - started
    finally:
        handle.remove()
    raise RuntimeError("the trial ended without an optimizer step")


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def overhead_parts(config: TrialConfig, data: PreparedData) -> dict[str, float]:
    """The steps `run_trial` takes before its first optimizer step, timed one by one."""
    task = data.task(config.tasks[0])

    def collate_dev_sets() -> None:
        for target in config.targets:
            for lang in target.languages:
                eval_batches(
                    data.load(target.task, "validation", lang),
                    data.task(target.task).kind,
                    data.pad_token_id,
                    EVAL_BATCH_MULTIPLIER * config.per_device_batch_size,
                )

    def first_batch() -> None:
        train = data.load(task.key, "train", "en")
        BatchStream(train, task.kind, data.pad_token_id, config.per_device_batch_size, 0).next()

    return {
        "collate every dev set (eval_batches)": timed(collate_dev_sets),
        "load_encoder": timed(lambda: load_encoder(config.model)),
        "BatchStream + first batch": timed(first_batch),
    }


def worker_import_seconds() -> float:
    """What a new Tune worker, with Ray already imported, takes to import what a trial runs."""
    code = (
        "import time, ray; started = time.perf_counter(); "
        "import xlt_search.trial, xlt_search.search; from ray import tune; "
        "print(time.perf_counter() - started)"
    )
    return float(
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "RAY_ADDRESS": ""},
        ).stdout
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="syn_nli", help="a synthetic task to train on")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup-steps", type=int, default=30, help="steps left out of the rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile our loop")
    args = parser.parse_args()
    if not 1 <= args.warmup_steps < args.steps:
        parser.error("--warmup-steps must be at least 1 and below --steps")

    with tempfile.TemporaryDirectory(prefix="throughput-") as folder:
        isolate(Path(folder))
        torch.set_num_threads(args.threads)
        model = resolve_model(SYNTHETIC_MODEL)
        config = trial_config(args, model, (args.task,))
        preparing = {
            "tokenizer": model,
            "max_seq_length": MAX_SEQ_LENGTH,
            "max_train_examples": None,
            "cache_dir": Path(folder) / "prepared",
            "seed": 0,
        }
        data = prepare_data(required_splits(config.tasks, config.targets), **preparing)
        started = time.perf_counter()  # rs_da's copies, prepared alone (the rest is cached)
        variant = augmented(DEFAULT_ROBUST_COPIES)
        data = prepare_data(
            required_splits(
                config.tasks, config.targets, augmentations=[variant], augment_intermediate=True
            ),
            synonyms=synonyms_file(ensure_suite()),
            **preparing,
        )
        rs_da_prep_s = time.perf_counter() - started

        rows = [("ours (pipeline loop)", ours(config, data), None)]
        trainers = (
            ("Trainer as run_glue.py: padded to max_seq_length", False, MAX_SEQ_LENGTH, "random"),
            ("Trainer, padded per batch", False, None, "random"),
            (
                "Trainer, padded per batch, group_by_length, eager attention",
                True,
                None,
                "group_by_length",
            ),
        )
        for name, loaded_as_ours, width, sampling in trainers:
            set_seed(config.seed)
            encoder = load_encoder(model) if loaded_as_ours else AutoModel.from_pretrained(model)
            meter, first = with_trainer(config, data, encoder, width, sampling)
            rows.append((name, meter, first))

        print(
            f"{args.task}, batch {args.batch_size}, {args.steps} steps (rate over the last "
            f"{args.steps - args.warmup_steps}), {args.threads} thread(s)"
        )
        print("loop | real tok/s | padded tok/s | padding | ms/step | s to first step")
        base = None
        for name, meter, first in rows:
            real, padded, ms = meter.rates(args.warmup_steps)
            base = base or real
            print(
                f"{name} | {real:,.0f} ({real / base:.2f}x ours) | {padded:,.0f} | "
                f"{1 - real / padded:.0%} | {ms:.1f} | {'-' if first is None else f'{first:.2f}'}"
            )

        # Robust training against plain, per optimizer step (the adversarial step's two forward
        # passes would count its tokens twice: its token rates would mislead). Plain is timed
        # again beside them, so a busy machine shifts all four alike.
        examples = len(data.load(args.task, "train", "en"))
        print(
            "\nrobust training (epsilon 0.1, both phases; rs_da with "
            f"{DEFAULT_ROBUST_COPIES} copies) | ms/step | x plain | {args.task}'s training examples"
        )
        plain_ms = None
        for kind in ROBUST_TRAINING:
            robust = replace(config, robust_training=kind, robust_epsilon=0.1, robust_phases="all")
            ms = ours(robust, data).rates(args.warmup_steps)[2]
            plain_ms = plain_ms or ms  # ROBUST_TRAINING starts with plain training
            trained = len(data.load(args.task, "train", "en", robust.train_variant(Phase.TARGET)))
            print(
                f"{kind} | {ms:.1f} | {ms / plain_ms:.2f} | {trained:,} ({trained / examples:.0f}x)"
            )
        print(
            f"{RS_DA}'s copies of every split it trains on, augmented and tokenized once before the "
            f"search | {rs_da_prep_s:.2f} s"
        )

        print("\nours, a trial's fixed overhead | seconds")
        print(
            "a new Tune worker's imports, before its first run_trial (once per worker: later "
            f"trials reuse it) | {worker_import_seconds():.2f}"
        )
        overhead = seconds_to_first_step(lambda: run_trial(config, data, lambda m, s: None))
        print(f"run_trial's call to its first optimizer step | {overhead:.2f}")
        for part, seconds in overhead_parts(config, data).items():
            print(f"  part of it, timed alone: {part} | {seconds:.2f}")
        mean_real = statistics.mean(rows[0][1].real)
        print(f"(a training batch holds {mean_real:.0f} real tokens on average)")

        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(ours, config, data)
            print(f"\nour loop, {args.steps} steps, the {args.profile} costliest calls:")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
