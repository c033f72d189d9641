"""Flame notifier: agent presence (registration, heartbeats, lost agents) and delivery to agents."""
