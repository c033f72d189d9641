"""Management client: async access to the Flame REST API and event streams."""
