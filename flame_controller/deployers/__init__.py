"""Deployers: create and remove the workers (flamelet agents) of one compute, on worker events."""
