"""Flame controller: the single writer of jobs and tasks (TAG expansion, state machine, log)."""
