"""Session ids cannot point anywhere but the sessions directory: not through ``/ws?session_id=``, not
through ``/sessions/{id}`` or its export and delete, however the id is spelled or encoded. Checked on
the filesystem: snapshots planted outside the directory are neither read, nor removed, nor written."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from aria.session.journal import JournalFileStore
from tests.keys import KEYS, OWNER
from tests.reliability.live import CLIENT_OPTIONS, ServerThread, SyncClient


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with ServerThread(
        tmp_path_factory.mktemp("paths") / "data", {"tts.options": {"ms_per_char": 1.0}}
    ) as live:
        yield live


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


BAD_SESSION_IDS = [
    "../../etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2Fvictim-session",
    "../victim-session",
    "/etc/passwd",
    "%2Ftmp%2Fvictim-session",
    "..%5C..%5Cvictim-session",
    "victim%00session",
    "abcdefgh%0a",
    "abcdefgh%0d%0aX-Injected:%201",
    "sessions/../../victim",
    "a" * 65,
    "a" * 4000,  # (a request line over 8 KiB gets no answer at all from uvicorn's websockets-sansio)
    "short",
    "%C3%A9t%C3%A9-session",
]


@pytest.fixture
def victims(plain: ServerThread) -> Iterator[tuple[Path, list[Path]]]:
    """Session snapshots outside the sessions directory, one and two levels up, marked VICTIM."""
    data_dir = Path(plain.settings.data_dir)
    with SyncClient(plain) as client:
        client.send_json({"type": "text", "text": "VICTIM-MARKER question"})
        client.until("response_done")
        session_id = client.session["session_id"]
    plain.quiet()
    plain.runtime.sessions.flush()  # the writer thread has written what was saved
    saved = JournalFileStore(data_dir / "sessions").load(session_id)  # the snapshot and its journal
    snapshot = json.dumps(saved)
    with httpx.Client(base_url=plain.url, auth=OWNER) as http:
        assert http.delete(f"/sessions/{session_id}").status_code == 200
    planted = [data_dir / "victim-session.json", data_dir.parent / "victim-session.json"]
    for path in planted:
        path.write_text(snapshot.replace(session_id, "victim-session"))
    yield data_dir.parent, planted
    for path in planted:
        path.unlink(missing_ok=True)


def test_session_ids_in_the_url_cannot_escape_the_data_dir(
    plain: ServerThread, victims: tuple[Path, list[Path]]
) -> None:
    root, planted = victims
    before = files_under(root)
    for session_id in BAD_SESSION_IDS:
        with connect(f"{plain.ws_url}?session_id={session_id}", **CLIENT_OPTIONS) as ws:
            message = json.loads(ws.recv(5))
            assert message["type"] == "error", (session_id, message)
            assert message["code"] == "invalid_session", (session_id, message)
            assert "VICTIM-MARKER" not in json.dumps(message)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
    plain.quiet()
    assert files_under(root) == before
    assert all(path.exists() for path in planted)


def raw_request(port: int, method: str, target: str, key: str = "") -> tuple[int, bytes]:
    """One HTTP/1.1 request with the target exactly as given (no client-side normalisation); ``key``:
    a session key to present."""
    extra = f"X-Aria-Session-Key: {key}\r\n" if key else ""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n"
        sock.sendall(head.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


def test_session_ids_in_rest_paths_cannot_escape_the_data_dir(
    plain: ServerThread, victims: tuple[Path, list[Path]]
) -> None:
    root, planted = victims
    before = files_under(root)
    ids = [
        *BAD_SESSION_IDS,
        "..%252F..%252Fvictim-session",
        "..",
        "%2e%2e",
        ".%2e/victim-session",
        "..;/victim-session",
    ]
    for session_id in ids:
        for method, target in [
            ("GET", f"/sessions/{session_id}"),
            ("GET", f"/sessions/{session_id}/export?format=json"),
            ("GET", f"/sessions/{session_id}/export?format=markdown"),
            ("DELETE", f"/sessions/{session_id}"),
        ]:
            status, body = raw_request(plain.port, method, target)
            assert status in (400, 404, 405), (method, target, status, body[:300])
            assert b"VICTIM-MARKER" not in body, (method, target)
    assert files_under(root) == before
    assert all(path.exists() for path in planted)
    # The control: had a path reached a planted snapshot, its marker would have shown.
    inside = Path(plain.settings.data_dir) / "sessions" / "victim-session.json"
    inside.write_bytes(planted[0].read_bytes())
    key = list(KEYS.values())[-1]  # the victim's snapshot is a copy of the session `victims` made last
    status, body = raw_request(plain.port, "GET", "/sessions/victim-session", key)
    assert status == 200
    assert b"VICTIM-MARKER" in body
    assert raw_request(plain.port, "DELETE", "/sessions/victim-session", key)[0] == 200


def test_saving_sessions_writes_only_inside_the_sessions_dir(plain: ServerThread) -> None:
    root = Path(plain.settings.data_dir).parent
    before = set(files_under(root))
    with SyncClient(plain) as client:
        client.send_json({"type": "text", "text": "save me"})
        client.until("response_done")
        session_id = client.session["session_id"]
    plain.quiet()
    added = set(files_under(root)) - before
    assert f"data/sessions/{session_id}.json" in added
    assert added <= {f"data/sessions/{session_id}{suffix}" for suffix in (".json", ".journal", ".archive")}
