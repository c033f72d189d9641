"""`dp`: clip the update's global L2 norm to C, then add N(0, sigma²) noise (Gaussian mechanism).

Only floating-point arrays take part: the norm is taken over all of them together; if it
exceeds C every float array is scaled by C/norm; then each float element gets independent
N(0, sigma²) noise (sigma = `noise_factor`, absolute, not multiplied by C) in the array's own dtype
and, for torch, on the tensor's own device. Integer arrays (counters) pass through untouched.
No privacy accounting. A `seed` makes the noise reproducible (tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from flame_sdk.privacy.base import Privacy, Weights

if TYPE_CHECKING:
    import torch


def clip_scale(norm: float, clip_threshold: float) -> float:
    """The factor that brings an L2 norm down to the threshold (1 when already within it)."""
    return clip_threshold / norm if norm > clip_threshold else 1.0


class GaussianDP(Privacy):
    """Norm clipping plus Gaussian noise."""

    sort: ClassVar[str] = "dp"

    def __init__(self, clip_threshold: float, noise_factor: float, seed: int | None = None) -> None:
        self.clip_threshold = clip_threshold
        self.noise_factor = noise_factor
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._torch_generator: torch.Generator | None = None

    def apply(self, delta: Mapping[str, np.ndarray]) -> Weights:
        floats = {n: a for n, a in delta.items() if np.issubdtype(a.dtype, np.floating)}
        norm = math.sqrt(
            sum(float(np.sum(np.square(a, dtype=np.float64))) for a in floats.values())
        )
        scale = clip_scale(norm, self.clip_threshold)
        out = dict(delta)
        for name, array in floats.items():
            value = array.astype(np.float64) * scale
            if self.noise_factor > 0:
                value += self.rng.normal(0.0, self.noise_factor, size=array.shape)
            out[name] = value.astype(array.dtype)
        return out

    def apply_torch(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        import torch

        generator = self._generator()
        floats = {n: t.detach() for n, t in state.items() if t.is_floating_point()}
        norm = math.sqrt(sum(float(torch.sum(t.double() ** 2)) for t in floats.values()))
        scale = clip_scale(norm, self.clip_threshold)
        out = dict(state)
        for name, tensor in floats.items():
            value = tensor.double() * scale
            if self.noise_factor > 0:
                noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
                value = value + self.noise_factor * noise.to(tensor.device)
            out[name] = value.to(tensor.dtype)
        return out

    def _generator(self) -> torch.Generator:
        import torch

        if self._torch_generator is None:
            self._torch_generator = torch.Generator()
            if self.seed is None:
                self._torch_generator.seed()
            else:
                self._torch_generator.manual_seed(self.seed)
        return self._torch_generator
