"""Data samplers: which samples a trainer trains on each round (`default`, `fedbalancer`)."""

from flame_sdk.datasamplers.base import AggregatorSampler, DataSampler, Metadata, TrainerSampler
from flame_sdk.datasamplers.default import DefaultAggregatorSampler, DefaultTrainerSampler
from flame_sdk.datasamplers.factory import SORTS, create_datasampler
from flame_sdk.datasamplers.fedbalancer import FedBalancerAggregator, FedBalancerTrainer

__all__ = [
    "SORTS",
    "AggregatorSampler",
    "DataSampler",
    "DefaultAggregatorSampler",
    "DefaultTrainerSampler",
    "FedBalancerAggregator",
    "FedBalancerTrainer",
    "Metadata",
    "TrainerSampler",
    "create_datasampler",
]
