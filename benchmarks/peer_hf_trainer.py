"""Our search against the same search written by hand with Hugging Face's Trainer, side by side.

    python benchmarks/peer_hf_trainer.py --spec search_spaces/quickstart.yaml --intermediate-steps 100 --target-steps 100 --per-size 1

The peer is a Ray Tune function trainable as most researchers would write it: per trial it loads the
raw splits with `datasets` (`xlt_search.data.load_task_split`), tokenizes them inside the trial
(`xlt_search.data.tokenize`, the same tokenization as ours, with datasets' map cache off as ours has
it), loads the encoder with a plain `AutoModel.from_pretrained` (the library's default attention),
then trains with one `transformers.Trainer` per intermediate task in sequence (the subset's
`intermediate_steps` split evenly between its tasks: multi-task with Trainer the simple way, one
optimizer and one warmup-then-decay schedule per task), one Trainer per target (a fresh copy of the
intermediate encoder each) and scores each target language's dev set with `Trainer.predict`. Both
sides share the heads (`xlt_search.trial.model`), the batch collation (`xlt_search.data.collate`: padding
to the batch's longest sequence; with `--peer-padding max_length` the peer's batches are padded on
to `max_seq_length`, as transformers' example scripts run_glue.py and run_xnli.py do by default;
the peer's batches are never grouped by length), the metrics, the subsets (`make_plan` on the
spec), the seeds, the batch size, the learning rates, weight decay, warmup ratio and optimizer steps
per phase (a hyperparameter the spec samples is drawn by each side's Tune on its own, so it may
differ).

Both run under FIFO (no early stopping) on one local Ray instance started beforehand, our search
through `run_search` with the spec cut to one report per trial, at its end, and no probes (probes
only exist to feed ASHA), so both sides do the same training and one evaluation per trial; ours
still writes one checkpoint per trial, logs to MLflow and writes its report. Neither side is timed
for generating the synthetic suite or converting its JSON files to Arrow (done once before either
starts); ours is timed for tokenizing into an empty cache. Everything is written under a temporary
folder.

Prints per side the wall time, ours split into data preparation, report and the rest (the trials
phase: Tune, trials, MLflow logging), the peer's mean tokenizing, training and evaluation seconds
per trial (timed inside the trial), the mean score, the load average when the side ended (other
work on the machine blurs a side's figures; `--peer-first` swaps the order), and the ratios
ours/peer of the whole search and of the trials phase. Tune's own `time_total_s` is not compared:
its clock does not start at the same point on both sides (the peer's equals the seconds its trial
times itself; ours' includes a new worker's imports of torch, transformers and datasets, some 3 s,
for the first trial each worker runs).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import ray
import torch
import yaml
from common import isolate
from transformers import AutoModel, AutoTokenizer, Trainer, TrainingArguments, set_seed

from xlt_search import subsets
from xlt_search.analysis import report
from xlt_search.data import collate, load_task_split, tokenize
from xlt_search.metrics import accuracy, macro_f1
from xlt_search.search import (
    describe_plan,
    driver,
    make_plan,
    run_search,
    target_configs,
    trial_config,
)
from xlt_search.search.tuner import tune_domain
from xlt_search.spec import SearchSpec, parse_spec
from xlt_search.synthetic import resolve_model
from xlt_search.tasks.base import Task
from xlt_search.trial import EVAL_BATCH_MULTIPLIER, MultiTaskModel, TrialConfig, required_splits

ROOT = Path(__file__).resolve().parents[1]
# What our search does besides its trials: xlt_search.search.prepare_search_data,
# report.write_report.
OURS_PARTS = ("prepare_search_data", "write_report")


@dataclass(frozen=True)
class Side:
    """One side's run: its wall time, the part of it spent on trials, its other parts timed."""

    wall: float
    trials_phase: float
    parts: dict[str, float]
    load: float  # the 1-minute load average when it ended
    results: list[dict[str, Any]]


class HeadModel(torch.nn.Module):
    """One head of a MultiTaskModel in the shape Trainer expects: keyword inputs, a dict out.

    The explicit signature lets Trainer drop the columns a step does not read (span splits carry
    evaluation-only columns) and keeps it from passing loss keyword arguments.
    """

    def __init__(self, model: MultiTaskModel, head: str) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        choice_mask: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        optional = {
            "labels": labels,
            "choice_mask": choice_mask,
            "start_positions": start_positions,
            "end_positions": end_positions,
        }
        batch.update({key: value for key, value in optional.items() if value is not None})
        loss, logits = self.model(self.head, batch)
        return {"loss": loss, "logits": logits} if loss is not None else {"logits": logits}


def collate_features(
    features: Sequence[Mapping[str, Any]], kind: str, pad_token_id: int, width: int | None = None
) -> dict[str, Any]:
    """Trainer's collator: its list of rows as the project's column batch, padded the same way,
    then, with `width`, on to `width` tokens (what padding to max_seq_length at tokenization
    gives)."""
    batch = collate(
        kind, {key: [row[key] for row in features] for key in features[0]}, pad_token_id
    )
    if width is None:
        return batch
    values = {"input_ids": pad_token_id, "attention_mask": 0, "labels": -100}
    ndim = batch["input_ids"].ndim
    return {
        key: torch.nn.functional.pad(value, (0, width - value.shape[-1]), value=values[key])
        if key in values and value.ndim == ndim
        else value
        for key, value in batch.items()
    }


def train_with_trainer(
    model: MultiTaskModel,
    head: str,
    task: Task,
    dataset: datasets.Dataset,
    steps: int,
    learning_rate: float,
    trial: TrialConfig,
    pad_token_id: int,
    width: int | None,
    output_dir: str,
    sampling: str = "random",
) -> None:
    """`steps` optimizer steps of one head on one tokenized split with a fresh Trainer.

    `width`: pad every batch to this many tokens (None: to its longest); `sampling`: Trainer's
    `train_sampling_strategy`.
    """
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=trial.per_device_batch_size,
        learning_rate=learning_rate,
        weight_decay=trial.weight_decay,
        warmup_steps=int(trial.warmup_ratio * steps),
        seed=trial.seed,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        train_sampling_strategy=sampling,
    )
    Trainer(
        model=HeadModel(model, head),
        args=args,
        train_dataset=dataset,
        data_collator=partial(
            collate_features, kind=task.kind, pad_token_id=pad_token_id, width=width
        ),
    ).train()


def predict_score(
    model: MultiTaskModel,
    head: str,
    task: Task,
    dataset: datasets.Dataset,
    trial: TrialConfig,
    pad_token_id: int,
    width: int | None,
    output_dir: str,
) -> float:
    """The task's metric on one tokenized dev split, through `Trainer.predict`."""
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_eval_batch_size=EVAL_BATCH_MULTIPLIER * trial.per_device_batch_size,
        label_names=["labels"],
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(
        model=HeadModel(model, head),
        args=args,
        data_collator=partial(
            collate_features, kind=task.kind, pad_token_id=pad_token_id, width=width
        ),
    )
    output = trainer.predict(dataset)
    predictions = output.predictions.argmax(-1).tolist()
    golds = output.label_ids.tolist()
    return (accuracy if task.metric == "accuracy" else macro_f1)(predictions, golds)


def peer_trial(
    config: dict[str, Any],
    spec: SearchSpec,
    model: str,
    registry: dict[str, Task],
    max_seq_length: int,
    pad_to_max_length: bool,
) -> None:
    """One trial of the hand-written search: tokenize, intermediate and target Trainers, score."""
    from ray import tune

    trial = trial_config(spec, model, config)
    torch.set_num_threads(trial.num_threads)
    set_seed(trial.seed)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(trial.model)
    pad = int(tokenizer.pad_token_id)
    width = max_seq_length if pad_to_max_length else None

    def tokenized(key: str, split: str, language: str) -> datasets.Dataset:
        task = registry[key]
        return tokenize(task, load_task_split(task, split, language), tokenizer, max_seq_length)

    train = {key: tokenized(key, "train", "en") for key in trial.tasks}
    for target in trial.targets:
        for key in registry[target.task].train_tasks or (target.task,):
            train.setdefault(key, tokenized(key, "train", "en"))
    dev = {
        (target.task, lang): tokenized(target.task, "validation", lang)
        for target in trial.targets
        for lang in target.languages
    }
    tokenized_at = time.perf_counter()

    scores: dict[str, dict[str, float]] = {}
    eval_s = 0.0
    with tempfile.TemporaryDirectory(prefix="peer-trainer-") as output_dir:
        encoder = AutoModel.from_pretrained(trial.model)
        if trial.tasks:
            heads = {key: (registry[key].kind, registry[key].num_labels) for key in trial.tasks}
            model = MultiTaskModel(encoder, heads)
            shares = _even_shares(trial.intermediate_steps, len(trial.tasks))
            for key, steps in zip(trial.tasks, shares, strict=True):
                train_with_trainer(
                    model,
                    key,
                    registry[key],
                    train[key],
                    steps,
                    trial.learning_rate,
                    trial,
                    pad,
                    width,
                    output_dir,
                )
            encoder = model.encoder
        for target in trial.targets:
            task = registry[target.task]
            model = MultiTaskModel(copy.deepcopy(encoder), {task.key: (task.kind, task.num_labels)})
            sources = task.train_tasks or (task.key,)
            shares = _even_shares(trial.target_steps, len(sources))
            for key, steps in zip(sources, shares, strict=True):
                train_with_trainer(
                    model,
                    task.key,
                    task,
                    train[key],
                    steps,
                    trial.target_lr,
                    trial,
                    pad,
                    width,
                    output_dir,
                )
            evaluated = time.perf_counter()
            scores[task.key] = {
                lang: predict_score(
                    model, task.key, task, dev[task.key, lang], trial, pad, width, output_dir
                )
                for lang in target.languages
            }
            eval_s += time.perf_counter() - evaluated
    transfer = [
        statistics.mean(value for lang, value in by_lang.items() if lang != "en")
        for by_lang in scores.values()
    ]
    tune.report(
        {
            "score": statistics.mean(transfer),
            "tokenize_s": tokenized_at - started,
            "train_s": time.perf_counter() - tokenized_at - eval_s,
            "eval_s": eval_s,
        }
    )


def _even_shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_peer(spec: SearchSpec, work: Path, pad_to_max_length: bool) -> Path:
    """The hand-written search under Tune (FIFO, the spec's concurrency); returns its folder."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    plan = make_plan(spec)
    model = resolve_model(spec.model)
    keys = [subsets.subset_key(s) for s in plan.subsets]
    random.Random(spec.seed).shuffle(keys)  # the order ours runs them in
    seeds = list(spec.trial_seeds)
    param_space = {
        "tasks": tune.grid_search(keys),
        "seed": tune.grid_search(seeds) if len(seeds) > 1 else seeds[0],
        **{name: tune_domain(d) for name, d in spec.hyperparameters.items()},
    }
    trainable = tune.with_resources(
        tune.with_parameters(
            peer_trial,
            spec=spec,
            model=model,
            registry=spec.registry,
            max_seq_length=spec.data.max_seq_length,
            pad_to_max_length=pad_to_max_length,
        ),
        {"cpu": spec.resources.cpu, "gpu": 0},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            scheduler=FIFOScheduler(),
            max_concurrent_trials=spec.max_concurrent_trials or None,
        ),
        run_config=tune.RunConfig(name="peer", storage_path=str(work / "peer-runs"), verbose=0),
    )
    tuner.fit()
    return work / "peer-runs" / "peer"


def last_results(folder: Path) -> list[dict[str, Any]]:
    """The last result Tune recorded for each trial of an experiment folder."""
    rows = []
    for path in sorted(folder.glob("*/result.json")):
        lines = path.read_text().strip().splitlines()
        if lines:
            rows.append(json.loads(lines[-1]))
    return rows


def equal_work_spec(args: argparse.Namespace, work: Path) -> tuple[SearchSpec, str]:
    """The spec cut to the knobs: FIFO, one report per trial, at its end, no probes, in `work`."""
    raw = yaml.safe_load(Path(args.spec).read_text())
    budget = raw["budget"]
    budget.update(intermediate_steps=args.intermediate_steps, target_steps=args.target_steps)
    # report_every_steps 1 only until the whole budget is known, just below.
    budget.update(scheduler="fifo", probe_steps=0, grace_period_steps=0, report_every_steps=1)
    raw.setdefault("subsets", {})["per_size"] = args.per_size
    if args.sizes:
        raw["subsets"]["sizes"] = args.sizes
    raw.setdefault("data", {})["cache_dir"] = str(work / "prepared")
    raw["mlflow"] = {"experiment": "peer-benchmark", "tracking_uri": f"sqlite:///{work}/mlflow.db"}
    raw["storage_path"] = str(work / "ours")
    spec = parse_spec(raw)
    # One report, at the end of the trial: the intermediate phase never reaches it.
    budget["report_every_steps"] = spec.max_budget_steps
    return parse_spec(raw), yaml.safe_dump(raw, sort_keys=False)


def check_peer_supports(spec: SearchSpec) -> None:
    if spec.subsets.sampler == "optuna":
        raise SystemExit("the peer runs a fixed list of subsets: use a spec without optuna")
    registry = spec.registry
    for target in spec.targets:
        if registry[target.task].kind not in ("classification", "multiple_choice"):
            raise SystemExit(
                f"the peer scores classification and multiple-choice targets only; "
                f"{target.task} is {registry[target.task].kind}"
            )
    if spec.data.max_train_examples is not None or spec.data.max_train_examples_per_task:
        raise SystemExit("the peer does not subsample training splits: drop the spec's train caps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "search_spaces" / "quickstart.yaml"))
    parser.add_argument("--intermediate-steps", type=int, default=100)
    parser.add_argument("--target-steps", type=int, default=100)
    parser.add_argument("--per-size", type=int, default=1, help="subsets per size")
    parser.add_argument("--sizes", type=int, nargs="+", help="subset sizes (default: the spec's)")
    parser.add_argument("--skip", choices=("ours", "peer"), help="run one side only")
    parser.add_argument("--peer-first", action="store_true", help="run the peer before ours")
    parser.add_argument(
        "--peer-padding",
        choices=("batch", "max_length"),
        default="batch",
        help="the peer pads each batch to its longest sequence, as ours does (batch), or to "
        "max_seq_length, as run_glue.py and run_xnli.py do by default (max_length)",
    )
    args = parser.parse_args()
    args.spec = str(Path(args.spec).resolve())

    with tempfile.TemporaryDirectory(prefix="peer-benchmark-") as folder:
        work = Path(folder)
        isolate(work)
        spec, spec_text = equal_work_spec(args, work)
        check_peer_supports(spec)
        print(describe_plan(make_plan(spec)), flush=True)
        resolve_model(spec.model)  # untimed: generating the synthetic suite
        for request in required_splits(spec.pool, target_configs(spec), spec.registry):
            load_task_split(spec.registry[request.task], request.split, request.language)
        # address="local": a bare ray.init(), as the project's _start_ray calls it, joins the
        # cluster `ray start` last recorded in /tmp/ray (another user's, on a shared machine, or a
        # dead one: it then hangs); run_search's _start_ray finds this one started and keeps it.
        ray.init(address="local", log_to_driver=False, configure_logging=False)

        ours_parts: dict[str, float] = {}
        # Timed where run_search calls them, so the trials' share of our wall time is known.
        for module, name in zip((driver, report), OURS_PARTS, strict=True):
            add_timer(module, name, ours_parts)
        runs = {
            "ours": lambda: run_search(spec, spec_text),
            "peer": lambda: run_peer(spec, work, args.peer_padding == "max_length"),
        }
        order = ["peer", "ours"] if args.peer_first else ["ours", "peer"]
        sides: dict[str, Side] = {}
        for name in (name for name in order if name != args.skip):
            started = time.perf_counter()
            results = last_results(runs[name]())
            wall = time.perf_counter() - started
            parts = ours_parts if name == "ours" else {}
            # The machine's load says how far other work blurred this side's figures.
            load = os.getloadavg()[0]
            sides[name] = Side(wall, wall - sum(parts.values()), parts, load, results)

        print(
            "side | wall s | data prep s | report s | trials phase s | trials | "
            "tokenize s/trial | train s/trial | eval s/trial | score | load avg at end"
        )
        for name, side in sides.items():
            cells = [f"{side.parts[key]:.1f}" if key in side.parts else "-" for key in OURS_PARTS]
            cells += [f"{side.trials_phase:.1f}", str(len(side.results))]
            cells += [_mean(side.results, key) for key in ("tokenize_s", "train_s", "eval_s")]
            cells += [_mean(side.results, "score", 3), f"{side.load:.1f}"]
            print(f"{name} | {side.wall:.1f} | " + " | ".join(cells))
        if len(sides) == 2:
            ours, peer = sides["ours"], sides["peer"]
            print(
                f"ours/peer wall time: whole search {ours.wall / peer.wall:.2f}, "
                f"trials phase (ours without data prep and report) "
                f"{ours.trials_phase / peer.wall:.2f}"
            )


def add_timer(module: Any, name: str, seconds: dict[str, float]) -> None:
    """Replace `module.name` with a wrapper that adds its calls' seconds to `seconds[name]`."""
    original = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started

    setattr(module, name, timed)


def _mean(results: Sequence[Mapping[str, Any]], key: str, digits: int = 2) -> str:
    values = [r[key] for r in results if key in r]
    return f"{statistics.mean(values):.{digits}f}" if values else "-"


if __name__ == "__main__":
    main()
