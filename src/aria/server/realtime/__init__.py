"""``/v1/realtime``: the OpenAI Realtime API (GA) over Aria's engines (``docs/realtime.md``).

``events`` / ``server_events`` are the wire models, ``protocol`` the sans-I/O state machine, ``codecs``
the audio formats, ``listening`` the server-side turn detection, ``responses`` the answer generator,
``ws`` the WebSocket shell.
"""
