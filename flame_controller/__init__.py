"""Flame controller: single writer of jobs and tasks; TAG expansion, job state machine, event log."""
