"""PyTorch adapter: `state_dict` <-> `Weights` (imported only when a role names framework torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from flame_sdk.weights import Weights, check_same_names


class TorchAdapter:
    """Reads a module's state_dict as CPU numpy copies; writes arrays back on the model's device.

    `set_weights` copies into the model's own tensors (no new tensors), and accepts read-only
    arrays (e.g. views of a received message).
    """

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
                _copy_into(tensor, value)


def _copy_into(tensor: torch.Tensor, value: np.ndarray) -> None:
    """`tensor[...] = value` (cast like `Tensor.copy_`) without an intermediate copy on CPU."""
    if tensor.device.type == "cpu" and tensor.dtype in _NUMPY_DTYPES:
        np.copyto(tensor.numpy(), value, casting="unsafe")
    else:
        source = value if value.flags.writeable else value.copy()
        tensor.copy_(torch.from_numpy(source))


_NUMPY_DTYPES = frozenset(
    {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}
    | {torch.float16, torch.float32, torch.float64}
)
