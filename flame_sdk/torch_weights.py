"""PyTorch adapter: `state_dict` <-> `Weights` (imported only when a role names framework torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from flame_sdk.weights import Weights, check_same_names


class TorchAdapter:
    """Reads a module's state_dict as CPU numpy copies; writes arrays back on the model's device."""

    def get_weights(self, model: Any) -> Weights:
        return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}

    def set_weights(self, model: Any, weights: Mapping[str, np.ndarray]) -> None:
        state = model.state_dict()
        check_same_names(state.keys(), weights.keys())
        with torch.no_grad():
            for name, tensor in state.items():
                value = np.asarray(weights[name])
                if tuple(value.shape) != tuple(tensor.shape):
                    raise ValueError(
                        f"weight '{name}' has shape {value.shape}, model expects "
                        f"{tuple(tensor.shape)}"
                    )
                tensor.copy_(torch.from_numpy(value))
