"""A Flame user's PyTorch trainer of the distributed mode (ring all-reduce, no aggregator)."""

import argparse
import logging

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from flame.config import Config
from flame.mode.distributed.trainer import Trainer
from flame_sdk.datasets import load_dataset
from flame_sdk.workloads.digits import build_model

logger = logging.getLogger(__name__)


class PyTorchDigitsTrainer(Trainer):
    """Trains on its shard, all-reduces with its peers, scores the result on the test set."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dataset_size = 0
        self.model = None
        self.train_loader = None
        self.x_test = None
        self.y_test = None
        self.epochs = self.config.hyperparameters.epochs
        self.batch_size = self.config.hyperparameters.batch_size or 16
        self.lr = self.config.hyperparameters.learning_rate or 0.1

    def initialize(self) -> None:
        torch.set_num_threads(1)
        self.model = build_model("mlp")

    def load_data(self) -> None:
        data = load_dataset(self.config.dataset)
        dataset = TensorDataset(torch.from_numpy(data.x), torch.from_numpy(data.y))
        self.train_loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=True)
        test = load_dataset("digits://test")
        self.x_test, self.y_test = torch.from_numpy(test.x), torch.from_numpy(test.y)

    def train(self) -> None:
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr)
        self.model.train()
        for _ in range(self.epochs):
            for data, target in self.train_loader:
                optimizer.zero_grad()
                F.cross_entropy(self.model(data), target).backward()
                optimizer.step()
        self.dataset_size = len(self.train_loader.dataset)

    def evaluate(self) -> None:
        self.model.eval()
        with torch.no_grad():
            output = self.model(self.x_test)
            accuracy = (output.argmax(1) == self.y_test).float().mean().item()
        logger.info(f"round {self._round}: accuracy {accuracy:.4f}")
        self.update_metrics({"test-accuracy": accuracy})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="")
    parser.add_argument("config", nargs="?", default="./config.json")
    args = parser.parse_args()

    config = Config(args.config)
    t = PyTorchDigitsTrainer(config)
    t.compose()
    t.run()
