"""``/v1/realtime``: the OpenAI Realtime API (GA) over Aria's conversation core (``docs/realtime.md``).

``events`` / ``server_events`` are the wire models; ``protocol`` (with ``state`` and ``answering``) the
sans-I/O state machine; ``codecs`` and ``tempo`` the audio formats and speed; ``listening`` the turn
detection a client that commits its own audio gets; ``bridge`` the session over the
:class:`~aria.server.conversation.Conversation` that ``/ws`` uses too; ``ws`` the WebSocket shell;
``files`` the audio files of ``/v1/audio/*``.
"""
