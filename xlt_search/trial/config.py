"""What one trial is: its settings (`TrialConfig`, one `TargetConfig` per target), how it reports,
and the prepared splits it reads."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from xlt_search.data import SplitRequest, augmented
from xlt_search.errors import UnknownTaskError, did_you_mean
from xlt_search.names import DEFAULT_ROBUST_COPIES, NO_ROBUST_TRAINING, RS_DA, split_languages
from xlt_search.tasks.base import Task
from xlt_search.trial.robust import Robustness


class Phase(enum.Enum):
    """A trial's two phases, in order, valued as its checkpoints name them."""

    INTERMEDIATE = "intermediate"
    TARGET = "target"

    @property
    def number(self) -> float:
        """The phase as a report gives it (its `phase` metric): 0 intermediate, 1 target."""
        return float(list(Phase).index(self))


@dataclass(frozen=True)
class TargetConfig:
    """A target task and the languages it is evaluated on ("en" included when the task has it).

    `fine_tuned` is False for a retrieval target: no training, its score is the encoder's as the
    intermediate phase leaves it. `mixed_languages`: the languages whose every pair l1-l2 is
    scored at the trial's final report on mixed-language instances (`data.mixing`).
    """

    task: str
    languages: tuple[str, ...]
    fine_tuned: bool = True
    mixed_languages: tuple[str, ...] = ()

    @property
    def mixed_pairs(self) -> tuple[tuple[str, str], ...]:
        """Every (l1, l2) of `mixed_languages`, the diagonal (l1 == l2) included, row by row."""
        return tuple((a, b) for a in self.mixed_languages for b in self.mixed_languages)


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
    robust_training: str = NO_ROBUST_TRAINING  # one of names.ROBUST_TRAINING
    robust_epsilon: float = 0.1  # each token's perturbation, relative to its embedding's norm
    robust_phases: str = "target"  # "all": the intermediate phase trains robustly too
    # the languages of the intermediate phase's training data, "+"-joined: "en", "en+de+zh"
    # (English and translations), "de+zh" (translations only)
    intermediate_languages: str = "en"
    robust_copies: int = (
        DEFAULT_ROBUST_COPIES  # rs_da: the augmented copies of each English training row
    )
    seed: int = 0
    num_threads: int = 1
    device: str = "cpu"
    precision: str = "auto"  # "bf16", "fp32", or "auto": bf16 on a CUDA GPU that supports it
    # A control trial's control (names.CONTROLS): its target fine-tunes train on the data as the
    # control makes it (`data.controls`); "" trains on the real data.
    control: str = ""

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
    def intermediate_codes(self) -> tuple[str, ...]:
        """The languages the intermediate phase trains on, in order."""
        return split_languages(self.intermediate_languages)

    def robustness(self, phase: Phase) -> Robustness:
        """How the steps of `phase` compute their gradient (trial/robust.py); the probes are
        target fine-tunes and train as the target phase does."""
        if self.robust_training == RS_DA or not self.robust_in(phase):
            return Robustness()  # rs_da's steps are plain: its robustness is in its data
        return Robustness(self.robust_training, self.robust_epsilon)

    def robust_in(self, phase: Phase) -> bool:
        """Whether `phase` trains robustly (the target phase always, the intermediate one with
        `robust_phases: all`)."""
        return phase is Phase.TARGET or self.robust_phases == "all"

    def train_variant(self, phase: Phase) -> str:
        """The variant of its English training splits `phase` reads (`SplitRequest.control`):
        a control trial's control in the target phase, RS-DA's augmented copies where it trains
        robustly with rs_da, else "" (the real data)."""
        if self.control and phase is Phase.TARGET:
            return self.control
        if self.robust_training == RS_DA and self.robust_in(phase):
            return augmented(self.robust_copies)
        return ""

    @property
    def fine_tuned_targets(self) -> tuple[TargetConfig, ...]:
        """The targets the target phase fine-tunes, in order (every target but retrieval ones)."""
        return tuple(target for target in self.targets if target.fine_tuned)

    @property
    def final_budget_steps(self) -> int:
        """This trial's budget_steps at its last report: its intermediate steps (none when the
        subset is empty) and every fine-tuned target's steps."""
        intermediate = self.intermediate_steps if self.tasks else 0
        return intermediate + self.target_steps * len(self.fine_tuned_targets)


# report(metrics, save_state): save_state(folder) writes what `resume_from=folder` needs. Call it
# during the report: it captures the trial's state at that moment.
Reporter = Callable[[dict[str, float], Callable[[Path], None]], None]


def training_tasks(task: Task) -> tuple[str, ...]:
    """The English tasks a target fine-tunes on, in order: its `train_tasks` (XCOPA: SIQA then
    COPA), or its own train split."""
    return task.train_tasks or (task.key,)


def required_splits(
    tasks: Sequence[str],
    targets: Sequence[TargetConfig],
    registry: Mapping[str, Task] | None = None,
    controls: Sequence[str] = (),
    languages: Sequence[str] = ("en",),
    augmentations: Sequence[str] = (),
    augment_intermediate: bool = False,
) -> list[SplitRequest]:
    """Every split a trial over `tasks` (or any subset of them) and `targets` reads; for each of
    `controls` the fine-tuned targets' training splits as that control trains on them; for each
    of `augmentations` (RS-DA's variants, `data.augmented`) those splits augmented, and the
    intermediate tasks' English ones too with `augment_intermediate`. `languages`: those the
    intermediate tasks' training data is read in (translate-train).

    `registry` defaults to the task registry.
    """
    if registry is None:
        from xlt_search.tasks import REGISTRY

        registry = REGISTRY
    intermediate = augmentations if augment_intermediate else ()
    requests = [SplitRequest(key, "train", lang) for key in tasks for lang in languages]
    requests += [
        SplitRequest(key, "train", "en", control=variant)
        for variant in intermediate
        for key in tasks
    ]
    for target in targets:
        if target.task not in registry:
            raise UnknownTaskError(
                f"unknown task '{target.task}'{did_you_mean(target.task, registry)}"
            )
        task = registry[target.task]
        if target.fine_tuned:
            requests += [
                SplitRequest(key, "train", "en", control=control)
                for control in ("", *controls, *augmentations)
                for key in training_tasks(task)
            ]
        requests += [SplitRequest(target.task, "validation", lang) for lang in target.languages]
        requests += [
            SplitRequest(target.task, "validation", first, second, aligned=target.mixed_languages)
            for first, second in target.mixed_pairs
        ]
    return list(dict.fromkeys(requests))
