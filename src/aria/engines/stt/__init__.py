"""STT engines (imported lazily by the registry)."""
