"""Robust training's perturbations against what they must be: each token moved by epsilon times its
embedding's norm, along a random direction (rs_rp) or the clean loss's gradient (adversarial), and
nothing left on the encoder afterwards."""

from __future__ import annotations

import pytest
import torch
from transformers import XLMRobertaConfig, XLMRobertaModel

from xlt_search.trial import MultiTaskModel
from xlt_search.trial.robust import Robustness

EPSILON = 0.3


@pytest.fixture
def model() -> MultiTaskModel:
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return MultiTaskModel(XLMRobertaModel(config), {"pair": ("classification", 3)}, None, "first")


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 40, (4, 7), generator=torch.Generator().manual_seed(1))
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.tensor([0, 1, 2, 1]),
    }


def embedding_sums(model: MultiTaskModel, robustness: Robustness) -> torch.Tensor:
    """What the embedding norm of the step's (last) forward pass read: word + position embeddings."""
    seen: list[torch.Tensor] = []
    norm = model.encoder.embeddings.LayerNorm
    handle = norm.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].detach()))
    try:
        robustness.backward(model, "pair", batch())
    finally:
        handle.remove()
    model.zero_grad()
    return seen[-1]


def gradients(model: MultiTaskModel, robustness: Robustness) -> list[torch.Tensor]:
    model.zero_grad()
    robustness.backward(model, "pair", batch())
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("kind", ["rs_rp", "adversarial"])
def test_each_token_moves_by_epsilon_times_its_embedding_norm(
    model: MultiTaskModel, kind: str
) -> None:
    clean = embedding_sums(model, Robustness())
    moved = embedding_sums(model, Robustness(kind, EPSILON)) - clean
    words = model.encoder.get_input_embeddings()(batch()["input_ids"]).detach()
    assert torch.allclose(moved.norm(dim=-1), EPSILON * words.norm(dim=-1), rtol=1e-4)


def test_the_adversarial_direction_is_the_clean_losss_gradient(model: MultiTaskModel) -> None:
    # FGM's first-order promise: the perturbed loss is above the clean one, and above a random
    # perturbation's of the same size.
    table = model.encoder.get_input_embeddings()
    clean_loss, _ = model("pair", batch())
    adversarial = embedding_sums(model, Robustness("adversarial", EPSILON))
    random = embedding_sums(model, Robustness("rs_rp", EPSILON))

    def loss_at(sums: torch.Tensor) -> float:
        shift = sums - embedding_sums(model, Robustness())
        handle = table.register_forward_hook(lambda _m, _i, output: output + shift)
        try:
            return float(model("pair", batch())[0].detach())
        finally:
            handle.remove()

    assert loss_at(adversarial) > loss_at(random)
    assert loss_at(adversarial) > float(clean_loss.detach())


def test_plain_training_is_the_loss_gradient_and_robust_training_is_another(
    model: MultiTaskModel,
) -> None:
    plain = gradients(model, Robustness())
    model.zero_grad()
    model("pair", batch())[0].backward()
    by_hand = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.equal(a, b) for a, b in zip(plain, by_hand, strict=True))
    for kind in ("rs_rp", "adversarial"):
        robust = gradients(model, Robustness(kind, EPSILON))
        assert any(not torch.allclose(a, b) for a, b in zip(plain, robust, strict=True)), kind


def test_no_perturbation_is_left_on_the_encoder(model: MultiTaskModel) -> None:
    before = model.encoder(input_ids=batch()["input_ids"]).last_hidden_state
    for kind in ("rs_rp", "adversarial"):
        gradients(model, Robustness(kind, EPSILON))
    after = model.encoder(input_ids=batch()["input_ids"]).last_hidden_state
    assert torch.equal(before, after)
