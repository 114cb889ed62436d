"""Sessions: history, settings and memory per conversation."""
