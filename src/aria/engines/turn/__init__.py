"""End-of-turn detectors (``turn:<backend>``): is the person's turn complete after a short pause?

Adapters are imported lazily by the engine registry.
"""
