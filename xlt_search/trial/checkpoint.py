"""A trial's checkpoint: the state file each report writes and `run_trial(resume_from=...)` reads,
the progress file beside it, the random state, and the settings a resumed trial must share.

A checkpoint is a folder: `STATE_FILE` (a `torch.save` archive, read back with
`weights_only=True`) holds the phase, the position in it, every model, optimizer, schedule and
batch stream, torch's random state and the trial's settings; `PROGRESS_FILE` holds the
budget_steps it was saved at, cheap to read.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from xlt_search.data import BatchStream
from xlt_search.trial.config import Phase, TargetConfig, TrialConfig
from xlt_search.trial.model import MultiTaskModel
from xlt_search.trial.task_sampler import TaskSampler
from xlt_search.trial.training import FineTune

STATE_FILE = "trial_state.pt"
PROGRESS_FILE = "progress.json"


def save_intermediate(
    folder: Path,
    config: TrialConfig,
    step: int,
    model: MultiTaskModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    sampler: TaskSampler,
    streams: Mapping[str, BatchStream],
) -> None:
    """Checkpoint the intermediate phase after its step `step`."""
    _write_state(
        folder,
        config,
        step,
        {
            "phase": Phase.INTERMEDIATE.value,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "sampler": sampler.state_dict(),
            "streams": {key: stream.state_dict() for key, stream in streams.items()},
        },
    )


def restore_intermediate(
    state: Mapping[str, Any],
    device: torch.device,
    model: MultiTaskModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    sampler: TaskSampler,
    streams: Mapping[str, BatchStream],
) -> int:
    """Load an intermediate checkpoint into the phase's objects and torch's random state; returns
    the step it was saved after."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["sampler"])
    for key, stream in streams.items():
        stream.load_state_dict(state["streams"][key])
    _set_rng_state(state["rng"], device)
    return state["step"]


def save_targets(
    folder: Path,
    config: TrialConfig,
    *,
    fine_tunes: Sequence[FineTune],
    position: int,
    metrics: Mapping[str, float],
    fixed_scores: Mapping[str, Mapping[str, Mapping[str, float]]],
    intermediate_encoder: Mapping[str, torch.Tensor] | None,
) -> None:
    """Checkpoint the target phase after `position` steps of its fine-tunes, with the report made
    there (`metrics`), the retrieval targets' scores and the encoder the intermediate phase left."""
    _write_state(
        folder,
        config,
        int(metrics["budget_steps"]),
        {
            "phase": Phase.TARGET.value,
            "position": position,
            "metrics": dict(metrics),
            "fixed_scores": {
                key: {lang: dict(values) for lang, values in by_lang.items()}
                for key, by_lang in fixed_scores.items()
            },
            "models": {tune.target.task: tune.model.state_dict() for tune in fine_tunes},
            "optimizers": {tune.target.task: tune.optimizer.state_dict() for tune in fine_tunes},
            "schedulers": {tune.target.task: tune.scheduler.state_dict() for tune in fine_tunes},
            "training": {tune.target.task: tune.batches.state_dict() for tune in fine_tunes},
            "intermediate_encoder": intermediate_encoder,
        },
    )


def restore_targets(
    state: Mapping[str, Any], device: torch.device, fine_tunes: Sequence[FineTune]
) -> tuple[
    int,
    dict[str, float],
    dict[str, dict[str, dict[str, float]]],
    dict[str, torch.Tensor] | None,
]:
    """Load a target checkpoint into the fine-tunes and torch's random state; returns the
    position, the report made there, the retrieval targets' scores and the intermediate encoder
    (None in a checkpoint written before it was kept)."""
    for tune in fine_tunes:
        key = tune.target.task
        tune.model.load_state_dict(state["models"][key])
        tune.optimizer.load_state_dict(state["optimizers"][key])
        tune.scheduler.load_state_dict(state["schedulers"][key])
        tune.batches.load_state_dict(state["training"][key])
    _set_rng_state(state["rng"], device)
    return (
        state["position"],
        dict(state["metrics"]),
        state["fixed_scores"],
        state.get("intermediate_encoder"),
    )


def read_state(folder: Path, config: TrialConfig) -> dict[str, Any]:
    """The state a trial with `config` resumes from; raises FileNotFoundError when `folder` holds
    none, ValueError when it was written by a trial with other settings."""
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


def saved_phase(state: Mapping[str, Any]) -> Phase:
    """The phase a state (`read_state`) was saved in."""
    return Phase(state["phase"])


def saved_config(state: Mapping[str, Any]) -> TrialConfig:
    """The settings a state (`read_state`, or the state file loaded) was saved with, as a
    `TrialConfig` (where it ran, `device` and `num_threads`, at their defaults)."""
    fields = dict(state["config"])
    fields["tasks"] = tuple(fields["tasks"])
    fields["targets"] = tuple(
        TargetConfig(task, tuple(languages), fine_tuned, tuple(mixed))
        for task, languages, fine_tuned, mixed in fields["targets"]
    )
    return TrialConfig(**fields)


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


def _write_state(
    folder: Path, config: TrialConfig, budget_steps: int, state: dict[str, Any]
) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state["config"] = _resume_identity(config)
    state["rng"] = _rng_state(torch.device(config.device))
    torch.save(state, folder / STATE_FILE)
    (folder / PROGRESS_FILE).write_text(json.dumps({"budget_steps": budget_steps}))


def _resume_identity(config: TrialConfig) -> dict[str, Any]:
    """The settings a checkpoint must share with the trial that resumes it."""
    identity = dataclasses.asdict(config)
    for name in ("device", "num_threads"):  # where a trial runs does not change what it computes
        identity.pop(name)
    identity["targets"] = [
        [t["task"], list(t["languages"]), t["fine_tuned"], list(t["mixed_languages"])]
        for t in identity["targets"]
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
