"""SIGKILL a process that saves turn after turn through the journal (with frequent compactions and an
archive) at random moments: what is read back is every turn it reported written, whole and in order,
and at most the turn in flight beyond."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aria.session.journal import JournalFileStore

WRITER = textwrap.dedent(
    """
    import sys
    from aria.session.journal import JournalFileStore
    from aria.session.store import SessionStore
    from aria.types import Message

    store = SessionStore(JournalFileStore(sys.argv[1], max_messages=30, compact_every=5), max_messages=30)
    session, _ = store.open("crash-journal", mode="voice_chat")
    turn = 0
    print("ready", flush=True)
    while True:
        session.history.append(Message("user", f"question {turn} " + "x" * 300, timestamp=1.0))
        session.history.append(Message("assistant", f"answer {turn}", timestamp=1.0))
        store.save(session)
        store.flush()
        print(turn, flush=True)
        turn += 1
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_journal_writer_killed_at_random_moments_loses_no_written_turn(tmp_path: Path) -> None:
    rng = random.Random(1234)
    seen = []
    for attempt in range(6):
        directory = tmp_path / f"run{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reported = [int(line) for line in proc.stdout.read().split() if line.strip().isdigit()]
        proc.stdout.close()
        written = reported[-1] if reported else -1
        seen.append(written)

        store = JournalFileStore(directory, max_messages=30)
        state = store.load("crash-journal")
        assert state is not None
        total = state["archived"] + len(state["history"])
        messages = store.earlier("crash-journal", total)
        assert len(messages) == total
        assert total % 2 == 0  # whole turns only
        turns = total // 2
        assert written < turns <= written + 2, (attempt, written, turns)
        for turn in range(turns):
            assert messages[2 * turn]["content"].startswith(f"question {turn} ")
            assert messages[2 * turn + 1]["content"] == f"answer {turn}"
        assert len(state["history"]) <= 30 + 2 * 5
    assert sum(seen) > 30, seen  # the kills came after compactions and archiving, not only at the start
