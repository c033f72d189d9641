"""A Flame user's PyTorch trainer (syncfl), unchanged but for the data: a digits shard."""

import argparse
import logging

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from flame.config import Config
from flame.mode.horizontal.syncfl.trainer import Trainer
from flame_sdk.datasets import load_dataset
from flame_sdk.workloads.digits import build_model

logger = logging.getLogger(__name__)


class PyTorchDigitsTrainer(Trainer):
    """Trains a small MLP on this trainer's shard (`config.dataset`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dataset_size = 0
        self.model = None
        self.train_loader = None
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

    def train(self) -> None:
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr)
        self.model.train()
        for epoch in range(1, self.epochs + 1):
            for data, target in self.train_loader:
                optimizer.zero_grad()
                loss = F.cross_entropy(self.model(data), target)
                loss.backward()
                optimizer.step()
            logger.info(f"epoch {epoch}: loss {loss.item():.4f}")
        self.dataset_size = len(self.train_loader.dataset)

    def evaluate(self) -> None:
        """No evaluation on the trainer."""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="")
    parser.add_argument("config", nargs="?", default="./config.json")
    args = parser.parse_args()

    config = Config(args.config)
    t = PyTorchDigitsTrainer(config)
    t.compose()
    t.run()
