"""VISION engines (imported lazily by the registry)."""
