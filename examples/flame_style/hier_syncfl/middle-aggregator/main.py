"""A Flame user's middle aggregator (hierarchical syncfl): the base class's FedAvg as is."""

import argparse

from flame.config import Config
from flame.mode.horizontal.middle_aggregator import MiddleAggregator


class RegionMiddleAggregator(MiddleAggregator):
    """Averages its region's trainers and forwards the result to the top aggregator."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def initialize(self) -> None:
        pass

    def load_data(self) -> None:
        pass

    def train(self) -> None:
        pass

    def evaluate(self) -> None:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="")
    parser.add_argument("config", nargs="?", default="./config.json")
    args = parser.parse_args()

    config = Config(args.config)
    a = RegionMiddleAggregator(config)
    a.compose()
    a.run()
