"""Taking a trial's models away: from its last checkpoint, as folders `save_pretrained` wrote.

`xlt-search export EXPERIMENT OUT` (`export_trial`) writes, for the search's best trial
(`best.best_trial`) or the one `--trial-run-id` names:

    OUT/encoder/       the encoder as the trial's intermediate phase left it (the baseline's: the
                       pretrained encoder), with the tokenizer of the search's model
    OUT/<target>/      per fine-tuned target: the fine-tuned encoder and the tokenizer, its head's
                       weights (head.safetensors) and what the head is (xlt_head.json: task, kind,
                       num_labels, pooling)
    OUT/export.json    the experiment, parent run, trial run, subset, hyperparameters and scores

Each encoder folder loads with `transformers.AutoModel.from_pretrained` (the encoder of an
mT5-like model with `AutoModelForTextEncoding`); `load_target_model`
loads a target's folder back as a model `trial.evaluate` scores. A retrieval target (Tatoeba)
has no folder of its own: it scores OUT/encoder.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlt_search.analysis.best import best_trial
from xlt_search.errors import UserError
from xlt_search.names import COMPLETED

if TYPE_CHECKING:
    import pandas as pd

    from xlt_search.tasks.base import Task
    from xlt_search.trial import MultiTaskModel, TrialConfig

ENCODER_FOLDER = "encoder"
HEAD_FILE = "head.safetensors"
HEAD_INFO_FILE = "xlt_head.json"
EXPORT_FILE = "export.json"


def export_trial(
    experiment: str,
    out: Path,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    trial_run_id: str | None = None,
) -> dict[str, Any]:
    """Write the models of a search's trial under `out` (see the module's docstring); returns
    what `export.json` says.

    The search is `parent_run_id`, else the newest of `experiment`; the trial is the child run
    `trial_run_id`, else the search's best. `out` must be new or empty.
    """
    import yaml

    from xlt_search import tracking
    from xlt_search.spec import HYPERPARAMETERS, parse_spec

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; export into a new or empty folder")
    found = tracking.find_search(experiment, tracking_uri, parent_run_id)
    trials = tracking.load_trials(experiment, found.tracking_uri, found.run_id)
    trial = _chosen_trial(trials, experiment, found.run_id, trial_run_id)
    checkpoint = trial_checkpoint(found.experiment_path, str(trial["trial_id"]))
    registry = parse_spec(yaml.safe_load(found.spec_text)).registry
    config = write_models(checkpoint, out, registry)
    scores = {
        key: float(value)
        for key, value in trial.items()
        if isinstance(key, str)
        and key.startswith(("score", "lang.", "family."))
        and isinstance(value, int | float)
        and math.isfinite(value)
    }
    summary = {
        "experiment": experiment,
        "tracking_uri": tracking.masked(found.tracking_uri),
        "parent_run_id": found.run_id,
        "trial_run_id": trial["run_id"],
        "trial_id": trial["trial_id"],
        "run_name": trial["run_name"],
        "chosen": "best" if trial_run_id is None else "given",
        "tasks": list(config.tasks),
        "n_tasks": len(config.tasks),
        "seed": config.seed,
        "hyperparameters": {name: getattr(config, name) for name in HYPERPARAMETERS},
        "model": config.model,
        "score": scores.get("score"),
        "budget_steps": config.final_budget_steps,
        "scores": dict(sorted(scores.items())),
        "encoder": ENCODER_FOLDER,
        "targets": {t.task: t.task for t in config.fine_tuned_targets},
        "checkpoint": str(checkpoint),
    }
    (out / EXPORT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _chosen_trial(
    trials: pd.DataFrame, experiment: str, parent_run_id: str, trial_run_id: str | None
) -> pd.Series:
    """The trial to export: the run `trial_run_id`, which must have completed, else the best."""
    search = f"search {parent_run_id} of experiment '{experiment}'"
    if trial_run_id is None:
        best = best_trial(trials)
        if best is None:
            counts = trials["status"].value_counts()
            seen = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no trials"
            raise UserError(
                f"{search} has no completed trial ({seen}); only a trial that ran its whole "
                "budget has fine-tuned models to export"
            )
        return best
    match = trials[trials["run_id"] == trial_run_id]
    if match.empty:
        raise UserError(
            f"run {trial_run_id} is not a trial of {search}; pass the run id of one of its "
            "child runs, or leave out --trial-run-id to take its best trial"
        )
    trial = match.iloc[0]
    if trial["status"] != COMPLETED:
        raise UserError(
            f"trial run {trial_run_id} ({trial['run_name']}) is {trial['status']}, not "
            f"{COMPLETED}: only a trial that ran its whole budget has fine-tuned models to "
            "export; pick a completed one, or leave out --trial-run-id to take the best"
        )
    return trial


def trial_checkpoint(experiment_path: str, trial_id: str) -> Path:
    """The last checkpoint folder of trial `trial_id` in a search's Tune experiment folder.

    Tune names a trial's folder after the trainable and the trial id (`_train_<trial id>_...`)
    and keeps its checkpoints in it as `checkpoint_<NNNNNN>`, numbered in order.
    """
    from xlt_search.trial import STATE_FILE

    if "://" in experiment_path:
        raise UserError(
            f"the search keeps its checkpoints at {experiment_path}; export reads them from a "
            "local folder only: run it on a machine where the search's storage_path is a folder"
        )
    folder = Path(experiment_path)
    if not folder.is_dir():
        raise UserError(
            f"the search's Tune experiment is not at {folder}, where its MLflow run says it is: "
            "its storage_path was moved or deleted; restore it there to export its trials"
        )
    checkpoints = [
        state.parent
        for trial in folder.glob(f"*_{trial_id}_*")
        for state in trial.glob(f"checkpoint_*/{STATE_FILE}")
    ]
    if not checkpoints:
        raise UserError(
            f"trial {trial_id}'s checkpoint is gone: nothing matches "
            f"{folder}/*_{trial_id}_*/checkpoint_*/{STATE_FILE}; it cannot be exported"
        )
    return max(checkpoints, key=lambda path: path.name)


def write_models(checkpoint: Path, out: Path, registry: Mapping[str, Task]) -> TrialConfig:
    """Write a finished trial's models from its last checkpoint under `out` (the module's layout,
    without export.json); returns the trial's config, as the checkpoint records it.

    `registry` gives each target's kind and labels (the search's tasks, its spec's included).
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from xlt_search.encoders import pooling
    from xlt_search.trial import (
        STATE_FILE,
        MultiTaskModel,
        Phase,
        check_checkpoint,
        load_encoder,
        saved_config,
        saved_phase,
    )

    try:
        check_checkpoint(checkpoint)
    except ValueError as error:
        raise UserError(f"{error}; it cannot be exported") from None
    # Memory-mapped: the optimizers' states, which export has no use for, are never read.
    state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True, mmap=True)
    config = saved_config(state)
    done = config.target_steps * len(config.fine_tuned_targets)
    if saved_phase(state) is not Phase.TARGET or state["position"] != done:
        raise UserError(f"{checkpoint} is not the end of its trial; it cannot be exported")
    if state.get("intermediate_encoder") is None:
        raise UserError(
            f"{checkpoint} was written before checkpoints kept the intermediate encoder; run the "
            "search again to export its trials"
        )
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    encoder = load_encoder(config.model)
    encoder.load_state_dict(state["intermediate_encoder"])
    _save_pretrained(encoder, tokenizer, out / ENCODER_FOLDER)
    for target in config.fine_tuned_targets:
        task = registry[target.task]
        heads = {task.key: (task.kind, task.num_labels)}
        model = MultiTaskModel(copy.deepcopy(encoder), heads, pooling=pooling(tokenizer))
        model.load_state_dict(state["models"][task.key])
        folder = out / task.key
        _save_pretrained(model.encoder, tokenizer, folder)
        save_file(model.heads[task.key].state_dict(), folder / HEAD_FILE)
        info = {
            "task": task.key,
            "kind": task.kind,
            "num_labels": task.num_labels,
            "pooling": pooling(tokenizer),
        }
        (folder / HEAD_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return config


def load_target_model(folder: Path | str, device: str = "cpu") -> MultiTaskModel:
    """A target's exported folder as a MultiTaskModel in eval mode: the fine-tuned encoder and
    its one head, named after the task (`xlt_head.json`'s `task`), ready for
    `trial.evaluate(model, task, ...)`."""
    from safetensors.torch import load_file

    from xlt_search.trial import MultiTaskModel, load_encoder

    folder = Path(folder)
    info = json.loads((folder / HEAD_INFO_FILE).read_text())
    model = MultiTaskModel(
        load_encoder(str(folder), device),
        {info["task"]: (info["kind"], info["num_labels"])},
        pooling=info.get("pooling", "first"),  # "first": exported before pooling was recorded
    )
    model.heads[info["task"]].load_state_dict(load_file(folder / HEAD_FILE))
    return model.to(device).eval()


def _save_pretrained(encoder: Any, tokenizer: Any, folder: Path) -> None:
    encoder.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
