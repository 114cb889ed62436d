"""TTS engines (imported lazily by the registry)."""
