"""The names a search is known by in MLflow: trial statuses, the tags of its runs, the metrics every
trial reports, and the run status each ending maps to.

Imports nothing from the package, so every module can use it.
"""

from __future__ import annotations

from typing import Literal

# The `status` tag of a child run.
COMPLETED = "completed"  # the trial ran its whole budget
EARLY_STOPPED = "early_stopped"  # ASHA cut it
ERRORED = "errored"
RUNNING = "running"  # the trial has not ended (and the state of a search under way)
INTERRUPTED = "interrupted"  # the trial was still open when its search ended

TrialStatus = Literal["completed", "early_stopped", "errored"]

# The status tag of a trial that ended -> the MLflow run status its run ends with.
RUN_STATUS: dict[str, str] = {
    COMPLETED: "FINISHED",
    EARLY_STOPPED: "FINISHED",  # ASHA's cut is an ordinary end; the status tag tells it apart
    ERRORED: "FAILED",
}

STATUS_TAG = "status"  # on each child run: one of the statuses above
ERROR_TAG = "error"  # on an errored child run: the error's text
# Tune's trial id on each child run: how a resumed search finds its runs.
TRIAL_ID_TAG = "xlt.trial_id"
PARENT_TAG = "mlflow.parentRunId"
ROLE_TAG = "xlt.role"  # SEARCH_ROLE on the parent run
SEARCH_ROLE = "search"
STATE_TAG = "xlt.state"  # on the parent run: RUNNING, then SEARCH_STATE's value for its end
# The parent run's MLflow status when its search ends -> its state tag. KILLED: a search stopped
# by SIGINT or SIGTERM, which `xlt-search resume` continues.
SEARCH_STATE: dict[str, str] = {"FINISHED": "finished", "FAILED": "failed", "KILLED": INTERRUPTED}
EXPERIMENT_PATH_TAG = "xlt.experiment_path"  # on the parent run: Tune's folder, for resume
SPEC_ARTIFACT = "spec.yaml"  # the parent run's copy of the search's spec
MAX_TAG_CHARS = 5000  # below MLflow's limit on tag values: longer values are cut to this

# The metrics every trial reports, at step=budget_steps.
SCORE = "score"  # the zero-shot score, averaged over non-English languages, then targets
BUDGET_STEPS = "budget_steps"  # the optimizer steps the trial has taken, both phases together
# At a trial's final report, per target with mixed languages: `mixed.<target>.<l1>-<l2>` for each
# cell (the target's metric, l1's part first), and its diagonal, off-diagonal and gap means.
MIXED = "mixed"
# The alignment diagnostic (trial/alignment.py): align.<lang>, align.<lang>.before.
ALIGN = "align"
MIXED_SUMMARIES: tuple[str, ...] = ("diagonal", "off_diagonal", "gap")


def mixed_metric(target: str, cell: str) -> str:
    """The metric name of a target's mixed-language cell `l1-l2`, or of one of MIXED_SUMMARIES."""
    return f"{MIXED}.{target}.{cell}"


# The controls of a transfer score (`subsets.controls`): a no-intermediate trial trained on target
# data made uninformative in one known way. WORD_SHUFFLE: every text field's words shuffled.
WORD_SHUFFLE = "word_shuffle"
CONTROLS: tuple[str, ...] = (WORD_SHUFFLE,)
# The task kinds whose training data a word shuffle or RS-DA's word swaps keep labelled (a span's
# answer offsets not).
SHUFFLED_KINDS: tuple[str, ...] = ("classification", "multiple_choice", "tagging")
CONTROL_PARAM = "control"  # the Tune config key and MLflow param of a control trial ("" if none)
# The guided sampler's prediction of each trial it proposes (Tune config keys and MLflow params):
# guided.mean, guided.sd (the score it expected at the whole budget), guided.step (1, 2, ...).
GUIDED_PREFIX = "guided."
# A trial's per-label accuracy: `label.<target>.<lang>.<label>`.
LABEL_PREFIX = "label."

# How the intermediate phase picks the task of its next batch (trial/task_sampler.py): the
# spec's `task_sampler` values.
TASK_SAMPLERS: tuple[str, ...] = ("proportional", "temperature", "uniform")

# Robust training (trial/robust.py): the spec's `robust_training` values, and `robust_phases`:
# the target fine-tunes (and their probes) only, or the intermediate phase as well. RS_DA trains
# plainly on `robust_copies` copies of each English row with words swapped for synonyms
# (data/controls.py), prepared once like a control's data.
NO_ROBUST_TRAINING = "none"


def split_languages(value: str) -> tuple[str, ...]:
    """The languages of an `intermediate_languages` value, in order ("en+de" -> ("en", "de")):
    those the intermediate phase trains on (English, translations of its tasks, or both)."""
    return tuple(code.strip() for code in str(value).split("+"))


RS_DA = "rs_da"
ROBUST_TRAINING: tuple[str, ...] = (NO_ROBUST_TRAINING, "rs_rp", "adversarial", RS_DA)
ROBUST_PHASES: tuple[str, ...] = ("target", "all")
DEFAULT_ROBUST_COPIES = 3  # rs_da's copies when the spec sets no robust_copies (Robust-XLT's XNLI)
