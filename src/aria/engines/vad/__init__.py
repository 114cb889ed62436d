"""Voice activity detection adapters (``vad:<backend>``) and the shared speech segmenter.

Adapters are imported lazily by the engine registry.
"""
