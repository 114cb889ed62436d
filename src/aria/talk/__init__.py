"""``aria talk``: the desktop assistant on the local microphone, speakers and camera.

``aria talk`` is a native client of the documented ``/ws`` protocol (``docs/protocol.md``). Locally it
starts the same ``aria serve`` application in this process on an ephemeral 127.0.0.1 port (same
pipeline, session store and engines); with ``--server ws://HOST:PORT`` it talks to a running server.
Both go through one client (:mod:`aria.talk.client`).

Modules, one concept each:

* :mod:`aria.talk.client`: the ``/ws`` connection: token, reconnect with backoff, resume;
* :mod:`aria.talk.conversation`: what the screen shows, built from server messages (pure code);
* :mod:`aria.talk.devices`: microphone and speakers through ``sounddevice`` (PortAudio), device loss;
* :mod:`aria.talk.echo`: WebRTC's AEC3 on the microphone with the played audio as reference; push-to-talk;
* :mod:`aria.talk.camera`: camera frames (OpenCV) from a device, a video or an image file;
* :mod:`aria.talk.files`: a conversation from and to WAV files, in real time or as fast as possible;
* :mod:`aria.talk.session`: wires one of those audio ends, the camera and the client together;
* :mod:`aria.talk.tui`: the terminal interface (rich).
"""

from __future__ import annotations

__all__: list[str] = []
