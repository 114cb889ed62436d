"""Aria's network server: the WebSocket endpoint ``/ws`` and its protocol.

The protocol itself is sans-I/O (:mod:`aria.server.messages` holds the wire messages as pydantic models,
:mod:`aria.server.protocol` turns frames into events and messages into frames); the endpoint is a thin
shell around it. The contract for clients is ``docs/protocol.md``.
"""
