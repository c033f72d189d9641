"""An optimizer's client-side term (`Optimizer.regularizer`) as a differentiable torch scalar."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from flame_sdk.optimizers import Regularizer


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
