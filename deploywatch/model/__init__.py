"""The event model: what an event is, built from what the API server sent and what was known."""
