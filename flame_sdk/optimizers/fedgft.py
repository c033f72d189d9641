"""FedGFT (group fairness): FedAvg on the server plus the global bias, a fairness term on clients.

A binary classifier's positive probability `p` is compared across a binary group attribute.
Per fairness notion (`fair`), the statistics of a set of examples are `(a, b, c, d)`, with the
bias `a/b - c/d`:

- `SP` (statistical parity): `a = Σp[g=0]`, `b = #[g=0]`, `c = Σp[g=1]`, `d = #[g=1]`;
- `EOP` (equal opportunity): the same over the examples with `y=1`;
- `CAL` (calibration): `a = Σp[g=0, y=1]`, `b = Σp[g=0]`, `c = Σp[g=1, y=1]`, `d = Σp[g=1]`.

A trainer reports its statistics divided by its example count; the server's weighted mean of
those (weights = example counts) are the global `A, B, C, D` and the global bias is
`val = A/B - C/D`. The client term of a batch is `coef·gamma·res` with `res = (a/B - c/D)/|batch|`
(negated for CAL), `coef = val` (`reg="l2"`) or `sign(val)` (`reg="id"`) with `gamma`, or
`|2·val|` for `gamma="auto"`. The functions here take numpy arrays or torch tensors alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

from flame_sdk.optimizers.fedavg import FedAvg
from flame_sdk.optimizers.regularizers import Regularizer

FAIRNESS = ("SP", "EOP", "CAL")
BIAS = "fedgft.bias"
"""Message field: a trainer's `BiasStats` (with `dataset_size`), or the server's `GlobalBias`."""
FLOOR = 1e-8  # the smallest denominator b, d (B, D)


def group_stats(p: Any, y: Any, group: Any, fair: str) -> tuple[Any, Any, Any, Any]:
    """`(a, b, c, d)` of a batch (sums, not divided): positive probabilities `p`, labels `y`
    and groups `group` as numpy arrays or torch tensors of one length."""
    g0, g1 = group == 0, group == 1
    if fair == "SP":
        return (p * g0).sum(), g0.sum(), (p * g1).sum(), g1.sum()
    positive = y == 1
    if fair == "EOP":
        a0, a1 = g0 & positive, g1 & positive
        return (p * a0).sum(), a0.sum(), (p * a1).sum(), a1.sum()
    if fair == "CAL":
        return (
            (p * (g0 & positive)).sum(),
            (p * g0).sum(),
            (p * (g1 & positive)).sum(),
            (p * g1).sum(),
        )
    raise ValueError(f"unknown fairness notion {fair!r} ({', '.join(FAIRNESS)})")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class BiasStats:
    """A trainer's statistics over its examples, each divided by their count."""

    a: float
    b: float
    c: float
    d: float

    @classmethod
    def of(cls, sums: Sequence[Any], count: int) -> Self:
        """From the sums of `group_stats` over `count` examples (`b, d` at least `FLOOR`)."""
        a, b, c, d = (float(v) / max(count, 1) for v in sums)
        return cls(a, max(b, FLOOR), c, max(d, FLOOR))

    @property
    def val(self) -> float:
        return self.a / self.b - self.c / self.d

    def wire(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_wire(cls, value: Any) -> Self | None:
        """The statistics of a message field; None unless an object of four finite numbers
        with `b, d > 0`."""
        if not isinstance(value, dict):
            return None
        numbers = [_finite(value.get(key)) for key in ("a", "b", "c", "d")]
        if any(n is None for n in numbers):
            return None
        a, b, c, d = (float(n or 0.0) for n in numbers)
        return cls(a, b, c, d) if b > 0 and d > 0 else None


@dataclass(frozen=True)
class GlobalBias(BiasStats):
    """The server's aggregate: `A, B, C, D` and the global bias `val = A/B - C/D`."""

    @property
    def sign(self) -> float:
        return 0.0 if self.val == 0 else math.copysign(1.0, self.val)


NEUTRAL = GlobalBias(0.0, 1.0, 0.0, 1.0)
"""The bias before the first aggregate: val 0, so the term is 0."""


class FairnessTerm(Regularizer):
    """FedGFT's client term (no term over the weights; `batch_term` over a batch's outputs).

    `receive_bias(GlobalBias)` installs the server's bias of the round; `batch_term(p, y,
    group)` is the value to add to the batch loss (a torch scalar for torch inputs)."""

    sort: ClassVar[str] = "fedgft"

    def __init__(self, fair: str, gamma: float | str, reg: str) -> None:
        if fair not in FAIRNESS:
            raise ValueError(f"unknown fairness notion {fair!r} ({', '.join(FAIRNESS)})")
        self.fair, self.gamma, self.reg = fair, gamma, reg
        self.bias = NEUTRAL

    def receive_bias(self, bias: GlobalBias) -> None:
        self.bias = bias

    def batch_term(self, p: Any, y: Any, group: Any) -> Any:
        a, _, c, _ = group_stats(p, y, group, self.fair)
        res = (a / self.bias.b - c / self.bias.d) / len(y)
        if self.fair == "CAL":
            res = -res
        gamma = abs(2 * self.bias.val) if self.gamma == "auto" else float(self.gamma)
        coef = self.bias.sign if self.reg == "id" else self.bias.val
        return coef * gamma * res


class FedGFT(FedAvg):
    """FedAvg of the weights; `aggregate_bias` gives the round's global bias."""

    sort: ClassVar[str] = "fedgft"

    def __init__(self, fair: str, gamma: float | str, reg: str = "l2") -> None:
        super().__init__(FairnessTerm(fair, gamma, reg))

    @staticmethod
    def aggregate_bias(reports: Sequence[tuple[BiasStats, int]]) -> GlobalBias | None:
        """The example-weighted mean of the trainers' statistics; None without examples."""
        total = sum(n for _, n in reports if n > 0)
        if total <= 0:
            return None
        a, b, c, d = (
            sum(getattr(s, key) * n / total for s, n in reports if n > 0) for key in "abcd"
        )
        return GlobalBias(a, max(b, FLOOR), c, max(d, FLOOR))
