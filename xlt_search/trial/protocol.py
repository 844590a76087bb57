"""One trial, top to bottom: intermediate tasks -> target fine-tunes -> zero-shot evaluation.

Plain Python (no Ray, no MLflow): it runs in a test, a notebook or a Tune trainable alike. The
protocol (Phang et al. 2020, X-STILTs):

1. load the pretrained encoder;
2. intermediate phase: multi-task training on the trial's subset of English tasks (or their
   translations: `intermediate_languages`), one head per task, batches drawn by a task sampler; every `report_every_steps` a *probe* scores the encoder so
   far (a short fine-tune of a copy on each target's English data, then zero-shot evaluation);
3. target phase: one copy of the intermediate encoder per target, fine-tuned on the target's English
   training data, the copies stepped in turn and evaluated every `report_every_steps`; a
   retrieval target (Tatoeba) is not fine-tuned: it scores the intermediate encoder as it is;
4. the score: per target the mean over its non-English dev sets, then the mean over targets;
   at the final report, a target with mixed languages is also scored on every cell l1-l2 of its
   mixed-language instances (`scoring.mixed_scores`), and the encoder the intermediate phase left
   is measured for alignment on the targets' parallel rows (`alignment`).

`budget_steps` counts optimizer steps of the intermediate phase and the target fine-tunes (not the
probes'): it is the axis ASHA compares trials on. Every report carries a checkpoint writer, and
`run_trial(..., resume_from=folder)` continues from it exactly where the trial stopped.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from xlt_search.data import BatchStream, PreparedData
from xlt_search.trial.alignment import alignment_metrics
from xlt_search.trial.checkpoint import (
    read_state,
    restore_intermediate,
    restore_targets,
    save_intermediate,
    save_targets,
    saved_phase,
)
from xlt_search.trial.config import Phase, Reporter, TargetConfig, TrialConfig
from xlt_search.trial.model import MultiTaskModel, load_encoder
from xlt_search.trial.scoring import (
    EvalSets,
    dev_sets,
    evaluate,
    mixed_scores,
    report_metrics,
    retrieval_scores,
)
from xlt_search.trial.task_sampler import TaskSampler
from xlt_search.trial.training import (
    FineTune,
    forked_rng,
    intermediate_data,
    make_optimizer,
    mean_loss,
    stable_seed,
    start_fine_tune,
    to_device,
    train_step,
)


def run_trial(
    config: TrialConfig,
    data: PreparedData,
    report: Reporter,
    resume_from: Path | None = None,
) -> dict[str, float]:
    """Train and evaluate one trial, reporting as it goes; returns the final report's metrics.

    Raises TrialDiverged when the training loss becomes NaN or infinite.
    """
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    state = read_state(Path(resume_from), config) if resume_from is not None else None
    eval_sets = dev_sets(config, data, device)
    encoder = load_encoder(config.model, device)

    if config.tasks and (state is None or saved_phase(state) is Phase.INTERMEDIATE):
        encoder = intermediate_phase(config, data, encoder, eval_sets, report, state)
        state = None
    return target_phase(config, data, encoder, eval_sets, report, state)


def intermediate_phase(
    config: TrialConfig,
    data: PreparedData,
    encoder: PreTrainedModel,
    eval_sets: EvalSets,
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
            intermediate_data(
                data, key, config.intermediate_codes, config.train_variant(Phase.INTERMEDIATE)
            ),
            task.kind,
            data.pad_token_id,
            config.per_device_batch_size,
            seed=stable_seed(config.seed, "intermediate", key),
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
    optimizer, scheduler = make_optimizer(
        model,
        config.learning_rate,
        config.weight_decay,
        config.warmup_ratio,
        config.intermediate_steps,
    )
    robustness = config.robustness(Phase.INTERMEDIATE)
    step = 0
    if state is not None:
        step = restore_intermediate(state, device, model, optimizer, scheduler, sampler, streams)

    def save_state(folder: Path) -> None:  # reads `step` when called, as a report calls it
        save_intermediate(folder, config, step, model, optimizer, scheduler, sampler, streams)

    # The loss is summed on the device and read only at reports: no host sync per step.
    loss_sum, loss_steps = torch.zeros((), device=device), 0
    while step < config.intermediate_steps:
        task = sampler.sample()
        batch = to_device(streams[task].next(), device)
        loss_sum += train_step(model, task, batch, optimizer, scheduler, robustness)
        loss_steps, step = loss_steps + 1, step + 1

        if step % config.report_every_steps == 0:
            loss = mean_loss(loss_sum, loss_steps)
            loss_sum, loss_steps = torch.zeros((), device=device), 0
            scores = {
                target.task: probe(config, data, model.encoder, target, eval_sets, step)
                for target in config.targets
            }
            report(
                report_metrics(scores, data, step, loss, Phase.INTERMEDIATE, final=False),
                save_state,
            )
    if loss_steps:
        mean_loss(loss_sum, loss_steps)  # a divergence after the last report
    return model.encoder


def probe(
    config: TrialConfig,
    data: PreparedData,
    encoder: PreTrainedModel,
    target: TargetConfig,
    eval_sets: EvalSets,
    step: int,
) -> dict[str, dict[str, float]]:
    """Score an intermediate encoder for one target: fine-tune a copy for `probe_steps`, evaluate.

    The probe runs on its own random stream, so probing never changes the trial's training.
    """
    if not target.fine_tuned:
        return retrieval_scores(encoder, target, eval_sets)
    seed = stable_seed(config.seed, "probe", target.task, step)
    with forked_rng(encoder.device, seed):
        tune = start_fine_tune(
            config, data, copy.deepcopy(encoder), target, config.probe_steps, seed
        )
        for own_step in range(config.probe_steps):
            tune.step(own_step)
        return zero_shot(tune, data, eval_sets)


def target_phase(
    config: TrialConfig,
    data: PreparedData,
    encoder: PreTrainedModel,
    eval_sets: EvalSets,
    report: Reporter,
    state: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Fine-tune a copy of `encoder` per target, in lockstep; evaluate zero-shot at each report.

    Retrieval targets are scored once, on `encoder` before any fine-tuning.
    """
    device = encoder.device
    targets = config.fine_tuned_targets
    tunes = [
        start_fine_tune(
            config,
            data,
            # The last target takes the encoder itself: one copy fewer in memory.
            encoder if i == len(targets) - 1 else copy.deepcopy(encoder),
            target,
            config.target_steps,
            stable_seed(config.seed, "target", target.task),
        )
        for i, target in enumerate(targets)
    ]
    if state is None:  # no fine-tune has stepped: `encoder` is as the intermediate phase left it
        position, metrics = 0, {}
        fixed_scores = {
            t.task: retrieval_scores(encoder, t, eval_sets)
            for t in config.targets
            if not t.fine_tuned
        }
        # Kept for every checkpoint of this phase (the export reads it), as the last fine-tune
        # trains it in place. On the CPU: no device memory.
        intermediate_encoder = {
            key: value.detach().to("cpu", copy=True) for key, value in encoder.state_dict().items()
        }
    else:
        position, metrics, fixed_scores, intermediate_encoder = restore_targets(
            state, device, tunes
        )

    def save_state(folder: Path) -> None:  # reads position and metrics when a report calls it
        save_targets(
            folder,
            config,
            fine_tunes=tunes,
            position=position,
            metrics=metrics,
            fixed_scores=fixed_scores,
            intermediate_encoder=intermediate_encoder,
        )

    total = config.target_steps * len(tunes)
    start = config.final_budget_steps - total
    if total == 0:  # retrieval targets only: nothing to fine-tune, one report
        metrics = report_metrics(fixed_scores, data, start, None, Phase.TARGET, final=True)
        report(metrics, save_state)
        return metrics
    loss_sum, loss_steps = torch.zeros((), device=device), 0
    while position < total:
        tune = tunes[position % len(tunes)]  # the targets take one step each in turn
        loss_sum += tune.step(position // len(tunes))
        loss_steps, position = loss_steps + 1, position + 1

        budget_steps, final = start + position, position == total
        if budget_steps % config.report_every_steps == 0 or final:
            loss = mean_loss(loss_sum, loss_steps)
            loss_sum, loss_steps = torch.zeros((), device=device), 0
            scores = {t.target.task: zero_shot(t, data, eval_sets) for t in tunes}
            scores.update(fixed_scores)
            metrics = report_metrics(scores, data, budget_steps, loss, Phase.TARGET, final=final)
            if final:  # the mixed-language matrices: once, on the finished fine-tunes
                for tune in tunes:
                    metrics.update(mixed_scores(tune, data, config, device))
                # and the alignment of the encoder as the intermediate phase left it
                metrics.update(alignment_metrics(encoder, config, data, intermediate_encoder))
            report(metrics, save_state)
    return metrics


def zero_shot(
    tune: FineTune, data: PreparedData, eval_sets: EvalSets
) -> dict[str, dict[str, float]]:
    """A fine-tune's metrics on each of its target's dev sets: English, and zero-shot transfer to
    the target's other languages."""
    target = tune.target
    task = data.task(target.task)
    return {
        lang: evaluate(tune.model, target.task, task, eval_sets[target.task, lang])
        for lang in target.languages
    }
