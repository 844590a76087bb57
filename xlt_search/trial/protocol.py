"""One trial, top to bottom: intermediate tasks -> target fine-tunes -> zero-shot evaluation.

Plain Python (no Ray, no MLflow): it runs in a test, a notebook or a Tune trainable alike. The
protocol (Phang et al. 2020, X-STILTs):

1. load the pretrained encoder;
2. intermediate phase: multi-task training on the trial's subset of English tasks, one head per
   task, batches drawn by a task sampler; every `report_every_steps` a *probe* scores the encoder so
   far (a short fine-tune of a copy on each target's English data, then zero-shot evaluation);
3. target phase: one copy of the intermediate encoder per target, fine-tuned on the target's English
   training data, the copies stepped in turn and evaluated every `report_every_steps`; a
   retrieval target (Tatoeba) is not fine-tuned: it scores the intermediate encoder as it is;
4. the score: per target the mean over its non-English dev sets, then the mean over targets.

`budget_steps` counts optimizer steps of the intermediate phase and the target fine-tunes (not the
probes'): it is the axis ASHA compares trials on. Every report carries a checkpoint writer, and
`run_trial(..., resume_from=folder)` continues from it exactly where the trial stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from xlt_search.data import BatchStream, PreparedData, SplitRequest, eval_batches
from xlt_search.errors import TrialDiverged, UnknownTaskError, did_you_mean
from xlt_search.metrics import (
    METRICS_BY_KIND,
    accuracy,
    macro_f1,
    retrieval_accuracy,
    squad_scores,
    tagging_scores,
)
from xlt_search.tasks.base import Task
from xlt_search.trial.model import (
    MultiTaskModel,
    decode_spans,
    load_encoder,
    mean_pooled,
    pick_answers,
)
from xlt_search.trial.task_sampler import TaskSampler

STATE_FILE = "trial_state.pt"
PROGRESS_FILE = "progress.json"  # beside the state: the budget_steps it was saved at, cheap to read
MAX_GRAD_NORM = 1.0
EVAL_BATCH_MULTIPLIER = 4  # evaluation batches hold this many training batches' worth of examples


@dataclass(frozen=True)
class TargetConfig:
    """A target task and the languages it is evaluated on ("en" included when the task has it).

    `fine_tuned` is False for a retrieval target: no training, its score is the encoder's as the
    intermediate phase leaves it.
    """

    task: str
    languages: tuple[str, ...]
    fine_tuned: bool = True


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial trains with: the subset, the targets, the budget and the optimizer."""

    model: str  # resolved: a local directory or a hub id
    tasks: tuple[str, ...]  # the intermediate subset, sorted registry keys; () for none
    targets: tuple[TargetConfig, ...]
    intermediate_steps: int
    target_steps: int  # per target
    report_every_steps: int  # on the budget_steps axis
    probe_steps: int  # short target fine-tune that scores the intermediate phase
    learning_rate: float = 5e-4
    target_learning_rate: float | None = None  # None: same as learning_rate
    per_device_batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    task_sampler: str = "proportional"
    sampler_cap: int = 5000
    sampler_temperature: float = 2.0
    seed: int = 0
    num_threads: int = 1
    device: str = "cpu"
    precision: str = "auto"  # "bf16", "fp32", or "auto": bf16 on a CUDA GPU that supports it

    @property
    def target_lr(self) -> float:
        """The learning rate of the target fine-tunes and the probes."""
        return (
            self.learning_rate if self.target_learning_rate is None else self.target_learning_rate
        )

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype the encoder's forward pass autocasts to (bf16), or None: fp32 throughout."""
        if self.precision == "bf16":
            return torch.bfloat16
        cuda = self.device.startswith("cuda") and torch.cuda.is_available()
        if self.precision == "auto" and cuda and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None

    @property
    def fine_tuned_targets(self) -> tuple[TargetConfig, ...]:
        return tuple(target for target in self.targets if target.fine_tuned)

    @property
    def max_budget_steps(self) -> int:
        """The budget_steps of the last report (no intermediate steps when the subset is empty)."""
        intermediate = self.intermediate_steps if self.tasks else 0
        return intermediate + self.target_steps * len(self.fine_tuned_targets)


# report(metrics, save_state): save_state(folder) writes what `resume_from=folder` needs. Call it
# during the report: it captures the trial's state at that moment.
Reporter = Callable[[dict[str, float], Callable[[Path], None]], None]


def required_splits(
    tasks: Sequence[str],
    targets: Sequence[TargetConfig],
    registry: Mapping[str, Task] | None = None,
) -> list[SplitRequest]:
    """Every split a trial over `tasks` (or any subset of them) and `targets` reads.

    `registry` defaults to the task registry.
    """
    if registry is None:
        from xlt_search.tasks import REGISTRY

        registry = REGISTRY
    requests = [SplitRequest(key, "train", "en") for key in tasks]
    for target in targets:
        if target.task not in registry:
            raise UnknownTaskError(
                f"unknown task '{target.task}'{did_you_mean(target.task, registry)}"
            )
        task = registry[target.task]
        if target.fine_tuned:
            requests += [SplitRequest(key, "train", "en") for key in _train_tasks(task)]
        requests += [SplitRequest(target.task, "validation", lang) for lang in target.languages]
    return list(dict.fromkeys(requests))


def run_trial(
    config: TrialConfig,
    data: PreparedData,
    report: Reporter,
    resume_from: Path | None = None,
) -> dict[str, float]:
    """Train and evaluate one trial, reporting as it goes; returns the final report's metrics.

    Raises TrialDiverged when the training loss becomes NaN or infinite.
    """
    _check_config(config, data)
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    state = _read_state(Path(resume_from), config) if resume_from is not None else None

    eval_sets = {
        (target.task, lang): _to_device_all(
            eval_batches(
                data.load(target.task, "validation", lang),
                data.task(target.task).kind,
                data.pad_token_id,
                EVAL_BATCH_MULTIPLIER * config.per_device_batch_size,
            ),
            device,
        )
        for target in config.targets
        for lang in target.languages
    }
    encoder = load_encoder(config.model, device)

    if config.tasks and (state is None or state["phase"] == "intermediate"):
        encoder = intermediate_phase(config, data, encoder, eval_sets, report, state)
        state = None
    return target_phase(config, data, encoder, eval_sets, report, state)


def intermediate_phase(
    config: TrialConfig,
    data: PreparedData,
    encoder: PreTrainedModel,
    eval_sets: Mapping[tuple[str, str], list[dict[str, Any]]],
    report: Reporter,
    state: Mapping[str, Any] | None = None,
) -> PreTrainedModel:
    """Multi-task training on the subset, probing the targets at each report."""
    device = encoder.device
    tasks = {key: data.task(key) for key in config.tasks}
    model = MultiTaskModel(
        encoder,
        {key: (t.kind, t.num_labels) for key, t in tasks.items()},
        config.autocast_dtype,
        data.pooling,
    )
    model.to(device).train()  # from_pretrained gives a model in eval mode: dropout off
    streams = {
        key: BatchStream(
            data.load(key, "train", "en"),
            task.kind,
            data.pad_token_id,
            config.per_device_batch_size,
            seed=_seed(config.seed, "intermediate", key),
        )
        for key, task in tasks.items()
    }
    sampler = TaskSampler(
        {key: len(stream) for key, stream in streams.items()},
        config.task_sampler,
        config.sampler_cap,
        config.sampler_temperature,
        seed=config.seed,
    )
    optimizer, scheduler = _optimizer(
        model,
        config.learning_rate,
        config.weight_decay,
        config.warmup_ratio,
        config.intermediate_steps,
    )
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        for key, stream in streams.items():
            stream.load_state_dict(state["streams"][key])
        _set_rng_state(state["rng"], device)
        step = state["step"]

    # The loss is summed on the device and read only at reports: no host sync per step.
    loss_sum, loss_steps = torch.zeros((), device=device), 0
    while step < config.intermediate_steps:
        task = sampler.sample()
        batch = _to_device(streams[task].next(), device)
        loss_sum += _train_step(model, task, batch, optimizer, scheduler)
        loss_steps, step = loss_steps + 1, step + 1

        if step % config.report_every_steps == 0:
            loss = _mean_loss(loss_sum, loss_steps)
            loss_sum, loss_steps = torch.zeros((), device=device), 0
            scores = {
                target.task: probe(config, data, model.encoder, target, eval_sets, step)
                for target in config.targets
            }
            metrics = _metrics(scores, data, step, loss, phase=0, final=False)
            save_state = partial(
                _save_intermediate,
                config=config,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                sampler=sampler,
                streams=streams,
                step=step,
            )
            report(metrics, save_state)
    if loss_steps:
        _mean_loss(loss_sum, loss_steps)  # a divergence after the last report
    return model.encoder


def probe(
    config: TrialConfig,
    data: PreparedData,
    encoder: PreTrainedModel,
    target: TargetConfig,
    eval_sets: Mapping[tuple[str, str], list[dict[str, Any]]],
    step: int,
) -> dict[str, dict[str, float]]:
    """Score an intermediate encoder for one target: fine-tune a copy for `probe_steps`, evaluate.

    The probe runs on its own random stream, so probing never changes the trial's training.
    """
    device = encoder.device
    task = data.task(target.task)
    if not target.fine_tuned:
        return _retrieval_scores(encoder, target, eval_sets)
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(_seed(config.seed, "probe", target.task, step))
        model = MultiTaskModel(
            copy.deepcopy(encoder),
            {target.task: (task.kind, task.num_labels)},
            config.autocast_dtype,
            data.pooling,
        )
        model.to(device).train()
        train = _TargetTraining(
            config, data, task, config.probe_steps, _seed(config.seed, "probe", target.task, step)
        )
        optimizer, scheduler = _optimizer(
            model,
            config.target_lr,
            config.weight_decay,
            config.warmup_ratio,
            config.probe_steps,
        )
        for own_step in range(config.probe_steps):
            batch = _to_device(train.batch(own_step), device)
            _train_step(model, target.task, batch, optimizer, scheduler)
        return {
            lang: evaluate(model, target.task, task, eval_sets[target.task, lang])
            for lang in target.languages
        }


def target_phase(
    config: TrialConfig,
    data: PreparedData,
    encoder: PreTrainedModel,
    eval_sets: Mapping[tuple[str, str], list[dict[str, Any]]],
    report: Reporter,
    state: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Fine-tune a copy of `encoder` per target, in lockstep; evaluate zero-shot at each report.

    Retrieval targets are scored once, on `encoder` before any fine-tuning.
    """
    device = encoder.device
    targets = config.fine_tuned_targets
    tasks = {target.task: data.task(target.task) for target in targets}
    if state is not None:
        fixed_scores = state["fixed_scores"]
        intermediate_encoder = state.get("intermediate_encoder")  # None: saved before it was kept
    else:
        fixed_scores = {
            t.task: _retrieval_scores(encoder, t, eval_sets)
            for t in config.targets
            if not t.fine_tuned
        }
        # The encoder as the intermediate phase left it, for every checkpoint of this phase (the
        # export reads it): the fine-tunes train it in place. On the CPU: no device memory.
        intermediate_encoder = {
            key: value.detach().to("cpu", copy=True) for key, value in encoder.state_dict().items()
        }
    models, optimizers, schedulers, training = {}, {}, {}, {}
    for i, target in enumerate(targets):
        task = tasks[target.task]
        # The last target takes the encoder itself: one copy fewer in memory.
        own_encoder = encoder if i == len(targets) - 1 else copy.deepcopy(encoder)
        models[target.task] = MultiTaskModel(
            own_encoder,
            {target.task: (task.kind, task.num_labels)},
            config.autocast_dtype,
            data.pooling,
        )
        models[target.task].to(device).train()
        optimizers[target.task], schedulers[target.task] = _optimizer(
            models[target.task],
            config.target_lr,
            config.weight_decay,
            config.warmup_ratio,
            config.target_steps,
        )
        training[target.task] = _TargetTraining(
            config, data, task, config.target_steps, _seed(config.seed, "target", target.task)
        )
    total = config.target_steps * len(targets)
    start = config.max_budget_steps - total
    position, metrics = 0, {}
    if state is not None:
        for key in models:
            models[key].load_state_dict(state["models"][key])
            optimizers[key].load_state_dict(state["optimizers"][key])
            schedulers[key].load_state_dict(state["schedulers"][key])
            training[key].load_state_dict(state["training"][key])
        _set_rng_state(state["rng"], device)
        position, metrics = state["position"], dict(state["metrics"])

    if total == 0:  # retrieval targets only: nothing to fine-tune, one report
        metrics = _metrics(fixed_scores, data, start, None, phase=1, final=True)
        report(
            metrics,
            partial(
                _save_targets,
                config=config,
                models={},
                optimizers={},
                schedulers={},
                training={},
                position=0,
                metrics=metrics,
                fixed_scores=fixed_scores,
                intermediate_encoder=intermediate_encoder,
            ),
        )
        return metrics
    loss_sum, loss_steps = torch.zeros((), device=device), 0
    while position < total:
        target = targets[position % len(targets)]  # the targets take one step each in turn
        own_step = position // len(targets)
        batch = _to_device(training[target.task].batch(own_step), device)
        loss_sum += _train_step(
            models[target.task],
            target.task,
            batch,
            optimizers[target.task],
            schedulers[target.task],
        )
        loss_steps, position = loss_steps + 1, position + 1

        budget_steps, final = start + position, position == total
        if budget_steps % config.report_every_steps == 0 or final:
            loss = _mean_loss(loss_sum, loss_steps)
            loss_sum, loss_steps = torch.zeros((), device=device), 0
            scores = {
                t.task: {
                    lang: evaluate(models[t.task], t.task, tasks[t.task], eval_sets[t.task, lang])
                    for lang in t.languages
                }
                for t in targets
            }
            scores.update(fixed_scores)
            metrics = _metrics(scores, data, budget_steps, loss, phase=1, final=final)
            save_state = partial(
                _save_targets,
                config=config,
                models=models,
                optimizers=optimizers,
                schedulers=schedulers,
                training=training,
                position=position,
                metrics=metrics,
                fixed_scores=fixed_scores,
                intermediate_encoder=intermediate_encoder,
            )
            report(metrics, save_state)
    return metrics


@torch.inference_mode()
def evaluate(
    model: MultiTaskModel, head: str, task: Task, batches: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """`task.metric` of head `head` over prepared evaluation batches (dropout off), by name; span
    tasks give both exact match and F1, as QA is reported."""
    was_training = model.training
    model.eval()
    try:
        predictions: list[Any] = []
        golds: list[Any] = []
        gold_answers: dict[int, list[str]] = {}
        for batch in batches:
            _, logits = model(head, batch)
            if task.kind == "span":  # per window of a context; answers are picked per example
                predictions += decode_spans(*logits, batch)
                gold_answers.update(zip(batch["example"], batch["answers"], strict=True))
            else:  # per example, or per token for tagging
                predictions += logits.argmax(-1).tolist()
                golds += batch["labels"].tolist()
    finally:
        model.train(was_training)
    if task.kind == "span":
        answers = pick_answers(predictions, task.unanswerable)
        examples = sorted(gold_answers)
        return squad_scores([answers[e] for e in examples], [gold_answers[e] for e in examples])
    if task.kind == "tagging":
        return {task.metric: tagging_scores(predictions, golds, task.labels)[task.metric]}
    score = accuracy if task.metric == "accuracy" else macro_f1
    return {task.metric: score(predictions, golds)}


@torch.inference_mode()
def evaluate_retrieval(encoder: PreTrainedModel, batches: Sequence[Mapping[str, Any]]) -> float:
    """Retrieval accuracy of `encoder`'s mean-pooled embeddings: each query against every
    candidate of the evaluation set (dropout off)."""
    was_training = encoder.training
    encoder.eval()
    try:
        queries = torch.cat(
            [mean_pooled(encoder, b["input_ids"], b["attention_mask"]) for b in batches]
        )
        candidates = torch.cat(
            [mean_pooled(encoder, b["candidate_ids"], b["candidate_mask"]) for b in batches]
        )
    finally:
        encoder.train(was_training)
    return retrieval_accuracy(queries, candidates)


def _retrieval_scores(
    encoder: PreTrainedModel,
    target: TargetConfig,
    eval_sets: Mapping[tuple[str, str], list[dict[str, Any]]],
) -> dict[str, dict[str, float]]:
    return {
        lang: {"accuracy": evaluate_retrieval(encoder, eval_sets[target.task, lang])}
        for lang in target.languages
    }


def _train_step(
    model: MultiTaskModel,
    head: str,
    batch: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> torch.Tensor:
    """One optimizer step on one batch; returns the loss, detached and still on the device."""
    loss, _ = model(head, batch)
    loss.backward()
    # The optimizer's list of parameters: cheaper than walking the modules again every step.
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def _optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, warmup_ratio: float, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no decay on biases and norms), linear warmup then linear decay over total_steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    fused = params[0].device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(groups, lr=lr, fused=fused)
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        # The multiplier for the step taken after `step` steps: no step is wasted at lr 0.
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _TargetTraining:
    """A target's English training data: its `train_tasks` in order (XCOPA: SIQA then COPA), each
    for an equal share of the steps, or its own train split."""

    def __init__(
        self, config: TrialConfig, data: PreparedData, task: Task, total_steps: int, seed: int
    ) -> None:
        self.total_steps = total_steps
        self.streams = [
            BatchStream(
                data.load(key, "train", "en"),
                task.kind,
                data.pad_token_id,
                config.per_device_batch_size,
                seed=_seed(seed, key),
            )
            for key in _train_tasks(task)
        ]

    def batch(self, step: int) -> dict[str, Any]:
        index = min(step * len(self.streams) // max(1, self.total_steps), len(self.streams) - 1)
        return self.streams[index].next()

    def state_dict(self) -> list[dict[str, int]]:
        return [stream.state_dict() for stream in self.streams]

    def load_state_dict(self, state: Sequence[Mapping[str, int]]) -> None:
        for stream, saved in zip(self.streams, state, strict=True):
            stream.load_state_dict(saved)


def _metrics(
    scores: Mapping[str, Mapping[str, Mapping[str, float]]],
    data: PreparedData,
    budget_steps: int,
    loss: float | None,
    phase: int,
    final: bool,
) -> dict[str, float]:
    """A report: the score (over targets, of the non-English mean), per target, language, family.

    `scores` maps target -> language -> metric -> value; the target's own metric makes its score
    (`lang.<target>.<lang>`), any other is reported beside it (`lang.<target>.<lang>.<metric>`).
    """
    metrics: dict[str, float] = {"budget_steps": budget_steps}
    per_family: dict[str, list[float]] = {}
    for target, by_lang in scores.items():
        primary = data.task(target).metric
        transfer = {lang: value[primary] for lang, value in by_lang.items() if lang != "en"}
        metrics[f"score.{target}"] = sum(transfer.values()) / len(transfer)
        for lang, values in by_lang.items():
            metrics[f"lang.{target}.{lang}"] = values[primary]
            for name, value in values.items():
                if name != primary:
                    metrics[f"lang.{target}.{lang}.{name}"] = value
        groups: dict[str, list[float]] = {}
        for lang, value in transfer.items():
            groups.setdefault(data.families[lang], []).append(value)
        for family, values in groups.items():
            per_family.setdefault(family, []).append(sum(values) / len(values))
    metrics["score"] = sum(metrics[f"score.{t}"] for t in scores) / len(scores)
    for family, values in sorted(per_family.items()):
        metrics[f"family.{family}"] = sum(values) / len(values)
    if loss is not None:  # None: no training step since the last report
        metrics["loss"] = loss
    metrics.update({"phase": float(phase), "final": float(final)})
    return metrics


def _mean_loss(loss_sum: torch.Tensor, steps: int) -> float:
    """The mean training loss since the last report (a host sync); NaN or inf ends the trial."""
    loss = float(loss_sum) / steps
    if not math.isfinite(loss):
        raise TrialDiverged(f"training loss became {loss}; lower the learning rate")
    return loss


def _save_intermediate(
    folder: Path,
    *,
    config: TrialConfig,
    model: MultiTaskModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    sampler: TaskSampler,
    streams: Mapping[str, BatchStream],
    step: int,
) -> None:
    _write_state(
        folder,
        config,
        step,
        {
            "phase": "intermediate",
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "sampler": sampler.state_dict(),
            "streams": {key: stream.state_dict() for key, stream in streams.items()},
        },
    )


def _save_targets(
    folder: Path,
    *,
    config: TrialConfig,
    models: Mapping[str, MultiTaskModel],
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler],
    training: Mapping[str, _TargetTraining],
    position: int,
    metrics: Mapping[str, float],
    fixed_scores: Mapping[str, Mapping[str, Mapping[str, float]]],
    intermediate_encoder: Mapping[str, torch.Tensor] | None,
) -> None:
    _write_state(
        folder,
        config,
        int(metrics["budget_steps"]),
        {
            "phase": "target",
            "position": position,
            "metrics": dict(metrics),
            "fixed_scores": {
                key: {lang: dict(values) for lang, values in by_lang.items()}
                for key, by_lang in fixed_scores.items()
            },
            "models": {key: model.state_dict() for key, model in models.items()},
            "optimizers": {key: opt.state_dict() for key, opt in optimizers.items()},
            "schedulers": {key: sched.state_dict() for key, sched in schedulers.items()},
            "training": {key: train.state_dict() for key, train in training.items()},
            "intermediate_encoder": intermediate_encoder,
        },
    )


def _write_state(
    folder: Path, config: TrialConfig, budget_steps: int, state: dict[str, Any]
) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state["config"] = _resume_identity(config)
    state["rng"] = _rng_state(torch.device(config.device))
    torch.save(state, folder / STATE_FILE)
    (folder / PROGRESS_FILE).write_text(json.dumps({"budget_steps": budget_steps}))


def checkpoint_budget_steps(folder: Path) -> int:
    """The budget_steps a trial's checkpoint (a folder `run_trial` reported) was saved at."""
    return int(json.loads((Path(folder) / PROGRESS_FILE).read_text())["budget_steps"])


def check_checkpoint(folder: Path) -> None:
    """Raise ValueError when a checkpoint's state file is missing or damaged (every byte is read
    and checked against the archive's CRCs; nothing is unpickled)."""
    path = Path(folder) / STATE_FILE
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is missing or not a checkpoint archive")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
        raise ValueError(f"{path} is damaged ({error})") from None
    if bad is not None:
        raise ValueError(f"{path} is damaged (its member {bad} fails its checksum)")


def _read_state(folder: Path, config: TrialConfig) -> dict[str, Any]:
    path = folder / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no trial state in {folder} (expected {STATE_FILE})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved, current = state["config"], _resume_identity(config)
    if saved != current:
        changed = sorted(k for k in current if saved.get(k) != current[k])
        raise ValueError(
            f"the checkpoint in {folder} is from a trial with other settings ({', '.join(changed)})"
        )
    return state


def _resume_identity(config: TrialConfig) -> dict[str, Any]:
    """The settings a checkpoint must share with the trial that resumes it."""
    identity = dataclasses.asdict(config)
    for name in ("device", "num_threads"):  # where a trial runs does not change what it computes
        identity.pop(name)
    identity["targets"] = [
        [t["task"], list(t["languages"]), t["fine_tuned"]] for t in identity["targets"]
    ]
    identity["tasks"] = list(identity["tasks"])
    return identity


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _seed(*parts: Any) -> int:
    """A stable 32-bit seed from the trial's seed and names (Python's hash() is salted)."""
    return zlib.crc32(":".join(map(str, parts)).encode())


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }


def _to_device_all(
    batches: Sequence[Mapping[str, Any]], device: torch.device
) -> list[dict[str, Any]]:
    return [_to_device(batch, device) for batch in batches]


def _train_tasks(task: Task) -> tuple[str, ...]:
    return task.train_tasks or (task.key,)


def _check_config(config: TrialConfig, data: PreparedData) -> None:
    """Fail before training on settings that could only fail later."""
    if not config.targets:
        raise ValueError("a trial needs at least one target")
    for name in ("target_steps", "report_every_steps", "per_device_batch_size", "num_threads"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in ("intermediate_steps", "probe_steps"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
    if config.tasks and config.intermediate_steps < 1:
        raise ValueError("intermediate_steps must be at least 1 when the subset is not empty")
    if len(set(config.tasks)) != len(config.tasks):
        raise ValueError(f"a task is listed twice in the subset {config.tasks}")
    if len({target.task for target in config.targets}) != len(config.targets):
        raise ValueError("a target is listed twice")
    for target in config.targets:
        task = data.task(target.task)
        if task.metric not in METRICS_BY_KIND[task.kind]:
            raise ValueError(
                f"target {task.key}: metric '{task.metric}' does not apply to {task.kind} tasks; "
                f"use one of {', '.join(METRICS_BY_KIND[task.kind])}"
            )
        if not any(lang != "en" for lang in target.languages):
            raise ValueError(f"target {task.key} needs a non-English language to score transfer")
        if target.fine_tuned != (task.kind != "retrieval"):
            raise ValueError(
                f"target {task.key}: a {task.kind} target is "
                f"{'not ' if task.kind == 'retrieval' else ''}fine-tuned (fine_tuned="
                f"{task.kind != 'retrieval'})"
            )
        if not target.fine_tuned:
            continue
        for key in _train_tasks(task):
            source = data.task(key)
            if source.kind != task.kind or (
                task.kind in ("classification", "tagging") and source.num_labels != task.num_labels
            ):
                raise ValueError(
                    f"target {task.key} trains on {key}, a {source.kind} task with "
                    f"{source.num_labels} labels; it must match the target's kind and labels"
                )
