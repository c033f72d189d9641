"""Flame's asynchronous FL mode (FedBuff): the syncfl trainer, async aggregators."""
