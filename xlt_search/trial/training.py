"""How a trial trains: one optimizer step, the optimizer and its schedule, batches on the device,
the seeds of its random streams, and one target's fine-tune built from them."""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from transformers import PreTrainedModel

from xlt_search.data import BatchStream, PreparedData
from xlt_search.errors import TrialDiverged
from xlt_search.tasks.base import Task
from xlt_search.trial.config import Phase, TargetConfig, TrialConfig, training_tasks
from xlt_search.trial.model import MultiTaskModel
from xlt_search.trial.robust import Robustness

PLAIN = Robustness()  # no perturbation

MAX_GRAD_NORM = 1.0


def train_step(
    model: MultiTaskModel,
    head: str,
    batch: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    robustness: Robustness = PLAIN,
) -> torch.Tensor:
    """One optimizer step on one batch through head `head`: forward and backward (on perturbed
    embeddings under `robustness`), gradient clipping (`MAX_GRAD_NORM`), the optimizer and the
    schedule; returns the loss, detached and still on the device."""
    loss = robustness.backward(model, head, batch)
    # The optimizer's list of parameters: cheaper than walking the modules again every step.
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, warmup_ratio: float, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (fused on CPU and CUDA; no decay on biases and norms), and its schedule: linear
    warmup over `warmup_ratio` of `total_steps`, then linear decay to 0 at `total_steps`."""
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


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """`batch` with its tensors on `device` (copied without blocking); other values as they are."""
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }


def mean_loss(loss_sum: torch.Tensor, steps: int) -> float:
    """The mean training loss since the last report (a host sync); raises TrialDiverged when it
    is NaN or infinite."""
    loss = float(loss_sum) / steps
    if not math.isfinite(loss):
        raise TrialDiverged(f"training loss became {loss}; lower the learning rate")
    return loss


def stable_seed(*parts: Any) -> int:
    """A stable 32-bit seed from the trial's seed and names (Python's hash() is salted)."""
    return zlib.crc32(":".join(map(str, parts)).encode())


@contextlib.contextmanager
def forked_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Run the block on its own random stream, seeded with `seed`: torch's global random state (the
    CPU's, and `device`'s on a GPU) is as it was before once the block ends."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def intermediate_data(
    data: PreparedData, key: str, languages: Sequence[str], variant: str = ""
) -> datasets.Dataset:
    """An intermediate task's training rows in `languages` (its English data, its translations),
    one language after the other: the task's stream shuffles them together, and the task sampler
    weighs the task by all of them. `variant` (RS-DA's copies) is read for English; a
    translation is read as it is."""
    splits = [data.load(key, "train", lang, variant if lang == "en" else "") for lang in languages]
    return splits[0] if len(splits) == 1 else datasets.concatenate_datasets(splits)


class TargetBatches:
    """A target's English training batches: its `training_tasks` in order (XCOPA: SIQA then COPA),
    each for an equal share of `total_steps`; with `control`, their splits as that variant
    (a control, RS-DA's copies) makes them."""

    def __init__(
        self,
        data: PreparedData,
        task: Task,
        batch_size: int,
        total_steps: int,
        seed: int,
        control: str = "",
    ) -> None:
        self.total_steps = total_steps
        self.streams = [
            BatchStream(
                data.load(key, "train", "en", control),
                task.kind,
                data.pad_token_id,
                batch_size,
                seed=stable_seed(seed, key),
            )
            for key in training_tasks(task)
        ]

    def batch(self, step: int) -> dict[str, Any]:
        """The batch of the fine-tune's step `step` (counted from 0)."""
        index = min(step * len(self.streams) // max(1, self.total_steps), len(self.streams) - 1)
        return self.streams[index].next()

    def state_dict(self) -> list[dict[str, int]]:
        """Each stream's position."""
        return [stream.state_dict() for stream in self.streams]

    def load_state_dict(self, state: Sequence[Mapping[str, int]]) -> None:
        """Continue every stream from a saved position."""
        for stream, saved in zip(self.streams, state, strict=True):
            stream.load_state_dict(saved)


@dataclass(eq=False)
class FineTune:
    """One target's fine-tune: a fresh head on an encoder, its optimizer, schedule and batches."""

    target: TargetConfig
    model: MultiTaskModel  # the encoder and one head, named after the target task
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: TargetBatches
    device: torch.device
    robustness: Robustness

    def step(self, own_step: int) -> torch.Tensor:
        """The fine-tune's optimizer step `own_step`; returns the loss, still on the device."""
        batch = to_device(self.batches.batch(own_step), self.device)
        return train_step(
            self.model, self.target.task, batch, self.optimizer, self.scheduler, self.robustness
        )


def start_fine_tune(
    config: TrialConfig,
    data: PreparedData,
    encoder: PreTrainedModel,
    target: TargetConfig,
    steps: int,
    seed: int,
) -> FineTune:
    """A fine-tune of `encoder` (trained in place) on `target`'s English training data, for
    `steps` steps at the target learning rate; its batches are drawn from `seed` (from the
    data of the trial's control, if it is one, or RS-DA's copies). The new head is initialized from torch's global
    random stream."""
    task = data.task(target.task)
    model = MultiTaskModel(
        encoder, {target.task: (task.kind, task.num_labels)}, config.autocast_dtype, data.pooling
    )
    model.to(encoder.device).train()
    optimizer, scheduler = make_optimizer(
        model, config.target_lr, config.weight_decay, config.warmup_ratio, steps
    )
    batches = TargetBatches(
        data, task, config.per_device_batch_size, steps, seed, config.train_variant(Phase.TARGET)
    )
    robustness = config.robustness(Phase.TARGET)
    return FineTune(target, model, optimizer, scheduler, batches, encoder.device, robustness)
