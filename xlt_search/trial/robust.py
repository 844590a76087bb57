"""Robust training (Huang et al. 2021, "Improving Zero-Shot Cross-Lingual Transfer Learning via
Robust Training"): the loss of a step computed on perturbed input embeddings, so the encoder learns
to tolerate the shift a target language's representations show against English.

Both kinds perturb the output of the encoder's word-embedding table (before positions and the
embedding norm), each token by a vector whose length is `epsilon` times that token's embedding norm
(a relative bound: the same `epsilon` means the same for a tiny encoder and for XLM-R):

- ``rs_rp`` (randomized smoothing, random perturbation): a direction drawn uniformly from the
  sphere for every token, one forward and backward pass, as plain training costs;
- ``adversarial`` (FGM, Miyato et al. 2017): the direction of the clean loss's gradient with respect
  to each token's embedding; the step's gradient is that of the clean loss plus that of the
  perturbed one (two forward and backward passes).

The hook that adds the perturbation is on the embedding table only for the pass that uses it, so
copies of an encoder (the target fine-tunes, the probes) never carry it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xlt_search.names import NO_ROBUST_TRAINING
from xlt_search.trial.model import MultiTaskModel


@contextlib.contextmanager
def _embedding_output(
    table: nn.Module, change: Callable[[torch.Tensor], torch.Tensor | None]
) -> Iterator[None]:
    """While the block runs, `change(output)` replaces the embedding table's output (None: as is)."""
    handle = table.register_forward_hook(lambda _module, _inputs, output: change(output))
    try:
        yield
    finally:
        handle.remove()


def _per_token(direction: torch.Tensor, embeddings: torch.Tensor, epsilon: float) -> torch.Tensor:
    """`direction` scaled, token by token, to `epsilon` times each token's embedding norm."""
    length = epsilon * embeddings.detach().norm(dim=-1, keepdim=True)
    return direction * length / direction.norm(dim=-1, keepdim=True).clamp(min=1e-12)


@dataclass(frozen=True)
class Robustness:
    """How a step computes its gradient: `kind` (one of `names.ROBUST_TRAINING`) and its bound."""

    kind: str = NO_ROBUST_TRAINING
    epsilon: float = 0.0

    def backward(self, model: MultiTaskModel, head: str, batch: Mapping[str, Any]) -> torch.Tensor:
        """The forward and backward passes of one step on `batch` through head `head`; the
        step's loss (the clean one for ``adversarial``), not detached."""
        if self.kind == NO_ROBUST_TRAINING:
            loss, _ = model(head, batch)
            loss.backward()
            return loss
        return _perturbed_backward(model, head, batch, self.kind, self.epsilon)


def _perturbed_backward(
    model: MultiTaskModel, head: str, batch: Mapping[str, Any], kind: str, epsilon: float
) -> torch.Tensor:
    table = model.encoder.get_input_embeddings()
    if kind == "rs_rp":

        def noisy(output: torch.Tensor) -> torch.Tensor:
            return output + _per_token(torch.randn_like(output), output, epsilon)

        with _embedding_output(table, noisy):
            loss, _ = model(head, batch)
        loss.backward()
        return loss
    if kind != "adversarial":
        raise ValueError(f"unknown robust training '{kind}'")
    clean: list[torch.Tensor] = []

    def kept(output: torch.Tensor) -> None:
        output.retain_grad()
        clean.append(output)

    with _embedding_output(table, kept):
        loss, _ = model(head, batch)
    loss.backward()
    (embedded,) = clean
    delta = _per_token(embedded.grad, embedded, epsilon)
    with _embedding_output(table, lambda output: output + delta):
        perturbed, _ = model(head, batch)
    perturbed.backward()
    return loss
