"""A Flame user's PyTorch top aggregator (hierarchical syncfl): FedAvg, scored each round."""

import argparse
import logging

import torch
import torch.nn.functional as F

from flame.config import Config
from flame.mode.horizontal.syncfl.top_aggregator import TopAggregator
from flame_sdk.datasets import load_dataset
from flame_sdk.workloads.digits import build_model

logger = logging.getLogger(__name__)


class PyTorchDigitsAggregator(TopAggregator):
    """Scores every global model on the central digits test set."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.model = None
        self.dataset = None
        self.x_test = None
        self.y_test = None

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_model("mlp", seed=0)

    def load_data(self) -> None:
        test = load_dataset("digits://test")
        self.x_test, self.y_test = torch.from_numpy(test.x), torch.from_numpy(test.y)

    def train(self) -> None:
        """The server does not train."""

    def evaluate(self) -> None:
        self.model.eval()
        with torch.no_grad():
            output = self.model(self.x_test)
            test_loss = F.cross_entropy(output, self.y_test).item()
            accuracy = (output.argmax(1) == self.y_test).float().mean().item()
        logger.info(f"round {self._round}: test loss {test_loss:.4f}, accuracy {accuracy:.4f}")
        self.update_metrics({"test-loss": test_loss, "test-accuracy": accuracy})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="")
    parser.add_argument("config", nargs="?", default="./config.json")
    args = parser.parse_args()

    config = Config(args.config)
    a = PyTorchDigitsAggregator(config)
    a.compose()
    a.run()
