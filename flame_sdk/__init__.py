"""Flame SDK: the async management client, flamectl, and the federated-learning data plane."""
