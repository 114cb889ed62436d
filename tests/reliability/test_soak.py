"""The soak benchmark, short: typed and spoken turns, interruptions and reconnects against a real server;
nothing lost, nothing leaked. And ``aria bench soak`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from aria.bench.soak import SoakBench, _missing
from aria.bench.soak_client import Turn
from aria.server.app import create_app
from tests.keys import OWNER
from tests.reliability.live import ServerThread, SyncClient

REPLY = "Sure, here is the answer. It has two sentences."

#: What 60 turns may add to this process's RSS. Measured: 0.4-1.4 MB (the conversation's history and
#: the fake engines' own records of every request among it).
RSS_SLACK_MB = 10.0
#: Objects the garbage collector tracks, per measured turn. Measured: about 11 (two history messages
#: and what they hold); a turn's state left behind (its messages, outputs, waterfall) holds hundreds.
OBJECTS_PER_TURN = 50
#: Descriptors that may come and go (the logging, a lazily opened file) without being a leak.
FD_SLACK = 2


async def test_a_short_soak_loses_nothing_and_leaks_nothing(tmp_path: Path) -> None:
    bench = SoakBench(
        create_app,
        turns=60,
        warmup=10,
        interrupt_every=5,
        reconnect_every=12,
        audio_every=3,
        data_dir=tmp_path,
    )
    result = await bench.run()

    assert result["turns"] == 60
    assert result["turns_started"] == 70
    assert result["lost_turns"] == 0
    assert result["lost_in_history"] == 0
    assert result["lost_in_saved_history"] == 0
    assert result["history_messages"] == 2 * 70
    assert result["errors"] == {}
    # Turns are numbered on from the warm-up's (0-9): every 3rd is spoken (index % 3 == 2) unless it is
    # the question that cut the previous answer short; every 5th answer (index % 5 == 4: 14 .. 69) is
    # cut short, by "interrupt" when index // 5 is even (and for 69, the last), else by the next
    # question (19, 29, 39, 49, 59); the connection is renewed before turns 12, 24, 36, 48 and, as 60
    # is such a question, 61.
    by_question = {20, 30, 40, 50, 60}
    spoken = [i for i in range(10, 70) if i % 3 == 2 and i not in by_question]
    assert result["audio_turns"] == len(spoken)
    assert result["text_turns"] == 60 - len(spoken)
    assert result["interrupted"] + result["interrupts_missed"] == 12
    assert result["interrupted"] >= 6
    assert result["completed"] == 60 - result["interrupted"]
    assert result["reconnects"] == 5

    growth = result["growth"]
    assert growth["tasks"] == 0
    assert abs(growth["fds"]) <= FD_SLACK
    assert growth["rss_mb"] < RSS_SLACK_MB
    assert growth["objects"] < OBJECTS_PER_TURN * 60
    assert 0 < result["turn_ms_p50"] <= result["turn_ms_p95"]
    # The saved snapshot (and its journal) is where the bench's own second server found the history.
    assert len(list((tmp_path / "sessions").glob("*.json"))) == 1
    # First and last turns compared, and RSS sampled at the start and the end.
    assert result["window_turns"] == result["completed"] // 2  # halves, with fewer than 2,000
    assert result["turn_ms_p50_first"] > 0
    assert result["turn_ms_p50_last"] > 0
    assert [turn for turn, _ in result["rss_samples"]] == [0, 60]
    assert result["rss_mb_per_1000_turns"] is not None


def turn(user: str, answer: str, *, interrupted: bool = False) -> Turn:
    return Turn(id=user, sent_at=0.0, user=user, answer=answer, interrupted=interrupted, done_at=1.0)


def entry(role: str, content: str, interrupted: bool = False) -> dict[str, object]:
    return {"role": role, "content": content, "interrupted": interrupted}


def test_the_history_check_counts_what_is_missing_or_wrong() -> None:
    turns = [turn("a", "A"), turn("b", "", interrupted=True), turn("c", "C")]
    whole = [
        entry("user", "a"),
        entry("assistant", "A"),
        entry("user", "b"),
        entry("assistant", "", True),
        entry("user", "lost turn"),  # a turn that never answered may leave its question behind
        entry("user", "c"),
        entry("assistant", "C"),
    ]
    assert _missing(turns, whole) == 0
    assert _missing(turns, whole[:-1]) == 1
    assert _missing(turns, [*whole[:3], entry("assistant", "", False), *whole[4:]]) == 1  # not interrupted
    assert _missing(turns, [*whole[2:4], *whole[:2], *whole[4:]]) == 1  # out of order
    assert _missing(turns, None) is None


def test_the_cli_prints_the_soak_result_as_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "aria", "bench", "soak", "--json", "--turns", "8", "--warmup", "2"),
            *("--interrupt-every", "3", "--reconnect-every", "4"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # --json prints only the result
    result = json.loads(lines[0])
    assert result["bench"] == "soak"
    assert result["turns"] == 8
    assert result["lost_turns"] == 0
    assert result["lost_in_history"] == 0
    assert result["reconnects"] == 2
    assert result["settings"]["interrupt_every"] == 3
    for key in ("rss_mb", "fds", "tasks", "objects"):
        assert isinstance(result["before"][key], int | float), key
        assert isinstance(result["growth"][key], int | float), key


def test_an_answer_cut_by_a_dropped_connection_stays_in_the_history_as_interrupted(tmp_path: Path) -> None:
    """A closed tab mid-answer is an interruption like any other: the history keeps what was heard,
    marked interrupted, so the conversation goes on alternating (some chat templates insist) and
    resumes with the question answered as far as it was."""
    with ServerThread(tmp_path, {"tts.options": {"ms_per_char": 30.0}}) as live:
        client = SyncClient(live)
        session_id = client.session["session_id"]
        client.send_json({"type": "text", "text": "first question"})
        while not isinstance(client.next(), bytes):  # the answer is being spoken
            pass
        client.close()
        live.quiet()
        with SyncClient(live, f"?session_id={session_id}") as again:
            again.send_json({"type": "text", "text": "second question"})
            again.until("response_done")
        history = httpx.get(f"{live.url}/sessions/{session_id}", auth=OWNER).json()["history"]
    assert [(h["role"], h["interrupted"]) for h in history] == [
        ("user", False),
        ("assistant", True),
        ("user", False),
        ("assistant", False),
    ]
    assert REPLY.startswith(history[1]["content"])
