"""Server aggregation rules over named numpy arrays, and their client-side loss terms."""

from flame_sdk.optimizers.base import Aggregation, Optimizer
from flame_sdk.optimizers.factory import SORTS, create_optimizer
from flame_sdk.optimizers.regularizers import CONTROL, DynTerm, ProxTerm, Regularizer, ScaffoldTerm
from flame_sdk.weights import Weights

__all__ = [
    "CONTROL",
    "SORTS",
    "Aggregation",
    "DynTerm",
    "Optimizer",
    "ProxTerm",
    "Regularizer",
    "ScaffoldTerm",
    "Weights",
    "create_optimizer",
]
