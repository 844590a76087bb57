"""The function trainable: one trial = one call of `trial.run_trial`, reporting to Tune.

Tune retries every error of a trial (`max_failures`), as it cannot tell a lost node from the
trial's own failure. A retry from the checkpoint would repeat a divergence or running out of the
GPU share exactly, so such a failure is recorded in the trial's storage (`record_failure`) and a
retry raises it again at once instead of training (`raise_recorded_failure`).

This module imports Ray at the top: import it only where a search runs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from xlt_search.errors import TrialDiverged
from xlt_search.search import interrupts
from xlt_search.search.plan import trial_config

if TYPE_CHECKING:
    from xlt_search.data import PreparedData
    from xlt_search.spec import SearchSpec

FAILURE_FILE = "repeating_failure.json"  # in a trial's storage folder


def trainable(spec: SearchSpec, model: str, data: PreparedData) -> Any:
    """The search's trainable for Tune: its spec, model and data bound, and its resources."""
    return tune.with_resources(
        tune.with_parameters(_train, data=data, spec=spec, model=model),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


def _train(config: dict[str, Any], data: PreparedData, spec: SearchSpec, model: str) -> None:
    """A trial's config -> run_trial, reporting (and checkpointing) to Tune."""
    import torch

    from xlt_search.trial import checkpoint_budget_steps, run_trial

    device = "cpu"
    if spec.resources.gpu > 0 and torch.cuda.is_available():
        # Ray's GPU fractions are logical: the trial itself keeps to its share of the memory.
        device = "cuda"
        torch.cuda.set_per_process_memory_fraction(min(1.0, spec.resources.gpu))
    trial = trial_config(spec, model, config, device)

    restored_from = 0  # the budget_steps of the checkpoint this run of the trial started from

    def report(metrics: dict[str, float], save_state: Any) -> None:
        with tempfile.TemporaryDirectory() as folder:
            save_state(Path(folder))
            metrics = {**metrics, "restored_from": restored_from}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        interrupts.hold_point(tune.get_context().get_trial_id(), int(metrics["budget_steps"]))

    storage = tune.get_context().get_storage()
    raise_recorded_failure(storage.storage_filesystem, storage.trial_fs_path)
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            run_trial(trial, data, report)
        else:
            with checkpoint.as_directory() as folder:
                restored_from = checkpoint_budget_steps(Path(folder))
                run_trial(trial, data, report, resume_from=Path(folder))
    except tuple(_repeating_failures().values()) as error:
        record_failure(storage.storage_filesystem, storage.trial_fs_path, error)
        raise
    if device == "cuda":
        torch.cuda.empty_cache()


def _repeating_failures() -> dict[str, type[Exception]]:
    """A trial's own failures that a retry from its checkpoint would repeat exactly, by name."""
    import torch

    return {kind.__name__: kind for kind in (TrialDiverged, torch.cuda.OutOfMemoryError)}


def record_failure(filesystem: Any, trial_path: str, error: Exception) -> None:
    """Record `error` in the trial's storage folder `trial_path` (on a pyarrow `filesystem`)."""
    filesystem.create_dir(trial_path, recursive=True)
    with filesystem.open_output_stream(f"{trial_path}/{FAILURE_FILE}") as stream:
        stream.write(json.dumps({"type": type(error).__name__, "message": str(error)}).encode())


def raise_recorded_failure(filesystem: Any, trial_path: str) -> None:
    """Raise the failure an earlier try of this trial recorded, if any."""
    import pyarrow.fs

    path = f"{trial_path}/{FAILURE_FILE}"
    if filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return
    with filesystem.open_input_stream(path) as stream:
        failure = json.loads(stream.read())
    raise _repeating_failures()[failure["type"]](
        f"{failure['message']} (raised again without training: an earlier try of this trial "
        "failed so, and a retry from its checkpoint would only repeat it)"
    )
