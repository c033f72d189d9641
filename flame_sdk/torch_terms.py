"""Optimizers' client-side terms as differentiable torch scalars (weight terms, FedGFT's)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from flame_sdk.optimizers import Regularizer
from flame_sdk.optimizers.fedgft import BiasStats, FairnessTerm, group_stats


def loss_term(
    regularizer: Regularizer, model: torch.nn.Module, w_t: Mapping[str, np.ndarray]
) -> torch.Tensor:
    """`regularizer.term(w, w_t)` over the trainable parameters `w` of `model`, as a tensor.

    `w_t` are the global weights the round started from (by state_dict name). The tensor's
    value is the term and the gradient it sends to each parameter is `regularizer.gradient(w,
    w_t)`: it is `term + Σ⟨g, p - p.detach()⟩`, so add it to the loss before `backward()`.
    The zero term of FedAvg-like optimizers is a constant 0 (no work per batch).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"a torch loss term needs a torch.nn.Module, got {type(model).__name__} "
            "(numpy models: use regularizer.term / regularizer.gradient)"
        )
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if type(regularizer) is Regularizer or not params:
        return torch.zeros(())
    w = {name: p.detach().cpu().numpy() for name, p in params.items()}
    gradient = regularizer.gradient(w, w_t)
    total = torch.tensor(regularizer.term(w, w_t))
    for name, p in params.items():
        if name in gradient:
            g = torch.from_numpy(np.asarray(gradient[name])).to(p)
            total = total + (g * (p - p.detach())).sum()
    return total


def positive_probability(logits: torch.Tensor) -> torch.Tensor:
    """`p(y=1)` of a binary classifier's outputs (logits or log-probabilities, shape (n, 2))."""
    return torch.softmax(logits, dim=1)[:, 1]


def fairness_term(
    term: FairnessTerm, logits: torch.Tensor, y: torch.Tensor, group: torch.Tensor
) -> torch.Tensor:
    """FedGFT's term of a batch (`FairnessTerm.batch_term`) as a differentiable scalar."""
    return torch.as_tensor(term.batch_term(positive_probability(logits), y, group))


def fairness_stats(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, group: torch.Tensor, fair: str
) -> BiasStats:
    """FedGFT's statistics of `model` over the examples `(x, y, group)` (evaluation mode)."""
    model.eval()
    with torch.no_grad():
        p = positive_probability(model(x))
        return BiasStats.of([float(v) for v in group_stats(p, y, group, fair)], len(y))
