"""flamelet: the agent inside each worker; fetches its task, runs the role code, reports status."""
