"""Runtime plumbing shared by Flame's services: settings, logs, MongoDB documents, event bus."""
