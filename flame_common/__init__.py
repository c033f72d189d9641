"""Runtime plumbing shared by Flame's services: settings, logging, MongoDB documents, the event bus."""
