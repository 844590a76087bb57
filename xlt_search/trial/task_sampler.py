"""Which task the next intermediate batch comes from (jiant's multi-task samplers).

- ``proportional``: p(task) ~ min(n, cap), examples-proportional with a cap (T5, jiant), so a huge
  task does not drown the small ones;
- ``temperature``: p(task) ~ min(n, cap) ** (1 / T); T = 1 is proportional, a large T tends to
  uniform;
- ``uniform``: every task equally often.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from xlt_search.names import TASK_SAMPLERS


def task_probabilities(
    sizes: Mapping[str, int],
    strategy: str = "proportional",
    cap: int | None = 5000,
    temperature: float = 2.0,
) -> dict[str, float]:
    """The probability of drawing each task, given its number of training examples."""
    if not sizes:
        raise ValueError("a task sampler needs at least one task")
    if strategy not in TASK_SAMPLERS:
        raise ValueError(
            f"unknown task sampler '{strategy}'; use one of {', '.join(TASK_SAMPLERS)}"
        )
    empty = [task for task, n in sizes.items() if n <= 0]
    if empty:
        raise ValueError(f"no training examples for {', '.join(sorted(empty))}")
    if cap is not None and cap <= 0:
        raise ValueError(f"sampler cap must be positive, got {cap}")
    if strategy == "temperature" and temperature <= 0:
        raise ValueError(f"sampler temperature must be positive, got {temperature}")
    keys = sorted(sizes)
    capped = {
        task: float(min(sizes[task], cap) if cap is not None else sizes[task]) for task in keys
    }
    if strategy == "uniform":
        weights = {task: 1.0 for task in keys}
    elif strategy == "proportional":
        weights = capped
    else:
        weights = {task: n ** (1.0 / temperature) for task, n in capped.items()}
    total = sum(weights.values())
    return {task: weights[task] / total for task in keys}


class TaskSampler:
    """Draws task keys with `task_probabilities`, from its own seeded random stream.

    The stream is independent of torch's and numpy's global state, and `state_dict` /
    `load_state_dict` carry it through a checkpoint, so a resumed trial draws the same tasks.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        strategy: str = "proportional",
        cap: int | None = 5000,
        temperature: float = 2.0,
        seed: int = 0,
    ) -> None:
        self.probabilities = task_probabilities(sizes, strategy, cap, temperature)
        self._tasks = list(self.probabilities)
        cumulative, running = [], 0.0
        for task in self._tasks:
            running += self.probabilities[task]
            cumulative.append(running)
        self._cumulative = cumulative
        self._rng = random.Random(seed)

    def sample(self) -> str:
        """The task the next batch comes from."""
        return self._rng.choices(self._tasks, cum_weights=self._cumulative)[0]

    def state_dict(self) -> dict[str, Any]:
        """The sampler's position in its random stream."""
        return {"tasks": list(self._tasks), "rng": self._rng.getstate()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved position; the task set must be the same."""
        if list(state["tasks"]) != self._tasks:
            raise ValueError(
                f"sampler state is for tasks {list(state['tasks'])}, not {self._tasks}"
            )
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
