"""Privacy settings through a live server: spoken audio is never written to disk (no setting writes it);
``session.persist = false`` writes nothing at all; ``session.retention_days`` deletes old sessions at
start-up."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from aria.session.journal import JournalFileStore
from aria.session.serialize import session_to_snapshot
from aria.session.store import Session
from aria.types import AudioChunk, Message
from tests.reliability.live import ServerThread, SyncClient

DAY = 86400.0


def speech(ms: int) -> list[bytes]:
    """A 200 Hz tone as audio frames (the fake VAD hears any sound as speech), then silence."""
    t = np.arange(320, dtype=np.float32) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    quiet = np.zeros(320, dtype=np.float32)
    frames = [b"\x01" + AudioChunk(tone, 16000).to_pcm16() for _ in range(ms // 20)]
    return frames + [b"\x01" + AudioChunk(quiet, 16000).to_pcm16() for _ in range(20)]


def talk(server: ServerThread) -> str:
    """One spoken and one typed turn; the session id."""
    with SyncClient(server) as client:
        for frame in speech(600):
            client.send(frame)
        client.until("response_done")
        client.send_json({"type": "text", "text": "a typed secret"})
        client.until("response_done")
        return str(client.session["session_id"])


def files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_spoken_turns_write_only_the_text_of_the_conversation(tmp_path: Path) -> None:
    with ServerThread(tmp_path / "data") as server:
        session_id = talk(server)
        server.quiet()
        server.runtime.sessions.flush()
    written = files(tmp_path / "data")
    assert written, "the conversation was saved"
    for path in written:
        assert path.parent.name == "sessions", path
        assert path.suffix in (".json", ".journal", ".archive"), path
        data = path.read_bytes()
        assert b"\x00" not in data  # PCM has zero bytes; JSON text has none
        data.decode("utf-8")
        assert not data.startswith(b"RIFF")
    saved = JournalFileStore(tmp_path / "data" / "sessions").load(session_id)
    assert saved is not None
    assert [m["content"] for m in saved["history"] if m["role"] == "user"] == [
        "what time is it",
        "a typed secret",
    ]
    assert sum(path.stat().st_size for path in written) < 16_000  # 0.6 s of 16 kHz audio is 19,200 bytes


def test_a_private_server_writes_nothing(tmp_path: Path) -> None:
    with ServerThread(tmp_path / "data", {"session.persist": False}) as server:
        session_id = talk(server)
        server.quiet()
        assert server.runtime.sessions.persist is False
        assert server.runtime.sessions.get(session_id) is not None  # kept in memory for a reconnect
    assert not [path for path in files(tmp_path) if "sessions" in path.parts]
    assert not any(b"typed secret" in path.read_bytes() for path in files(tmp_path))


def test_sessions_older_than_the_retention_are_deleted_at_start_up(tmp_path: Path) -> None:
    store = JournalFileStore(tmp_path / "data" / "sessions")
    now = time.time()
    for name, age_days in (("ancient-session", 40), ("recent-session", 2)):
        session = Session(name, created=now - age_days * DAY, last_seen=now - age_days * DAY)
        session.history.append(Message("user", f"{name} question", timestamp=now - age_days * DAY))
        session.updated = now - age_days * DAY
        store.save(name, session_to_snapshot(session))
    with ServerThread(tmp_path / "data", {"session.retention_days": 30}) as server:
        deadline = time.monotonic() + 10
        while (tmp_path / "data" / "sessions" / "ancient-session.json").exists():
            assert time.monotonic() < deadline, "the old session was not deleted"
            time.sleep(0.05)
        assert [s.id for s in server.runtime.sessions.list()] == ["recent-session"]
