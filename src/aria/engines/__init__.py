"""Engines: the interfaces in :mod:`aria.engines.base` and one adapter module per backend.

Adapters live in ``aria.engines.<kind>.<backend>`` and are imported lazily by the registry, only when the
configuration selects them, so importing this package imports no engine SDK.
"""
