"""An interrupted answer on the page: the part the person heard shown as usual, the rest marked "not heard",
for a live answer (``response_done`` with ``interrupted``) and for a resumed session's history. Against the
stub server (``stub_server.py``), so the texts are known.

Skipped unless ``/usr/bin/chromium`` and the ``playwright`` package are present. Screenshots go to
``artifacts/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import require_browser
from tests.browser.stub_server import session_message

if TYPE_CHECKING:
    from tests.browser.conftest import AriaPage, OpenPage
    from tests.browser.stub_server import StubAria

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
require_browser()

pytestmark = pytest.mark.timeout(60)

ANSWER = (
    "The capital of France is Paris. It sits on the Seine, and about two million people live in the "
    "city itself."
)
HEARD = "The capital of France is Paris. It sits on"

SPLIT = "async ([answer, heard]) => (await import('/heard.js')).splitHeard(answer, heard)"


def answer(stub: StubAria, aria: AriaPage, turn_id: str, text: str, heard: str) -> None:
    """Stream ``text`` as the answer to ``turn_id``, then end it as interrupted with ``heard`` heard."""
    stub.send({"type": "state", "state": "responding", "turn_id": turn_id})
    for word in text.split(" "):
        stub.send({"type": "text_token", "turn_id": turn_id, "text": f"{word} "})
    stub.send({"type": "response_done", "turn_id": turn_id, "text": heard, "interrupted": True})
    stub.send({"type": "state", "state": "idle", "turn_id": turn_id})
    aria.wait_for(f"t.responses.some((r) => r.turn_id === {turn_id!r})", 5, "response_done")


def bubble(aria: AriaPage, index: int) -> dict[str, Any]:
    """The assistant bubble number ``index``: its heard text, its unheard part and the badge's title."""
    shown: dict[str, Any] = (
        aria.page.locator(".msg.assistant")
        .nth(index)
        .evaluate(
            """(li) => {
          const text = li.querySelector('.text');
          const rest = text.querySelector('.unheard');
          const before = [...text.childNodes].filter((n) => n !== rest);
          const heard = before.map((n) => n.textContent).join('').trim();
          const own = rest ? [...rest.childNodes].filter((n) => n.nodeType === 3) : null;
          const visible = own ? own.map((n) => n.textContent).join('') : null;
          const style = rest ? getComputedStyle(rest) : null;
          return {
            heard, unheard: visible, title: rest?.title ?? null, exact: rest?.dataset.exact ?? null,
            struck: style ? style.textDecorationLine : null, colour: style ? style.color : null,
            heardColour: getComputedStyle(text).color,
            badge: li.querySelector('.badge')?.title ?? null,
            interrupted: li.classList.contains('interrupted'),
          };
        }"""
        )
    )
    return shown


def test_interrupted_answer_shows_heard_and_unheard(open_stub_page: OpenPage, stub_aria: StubAria) -> None:
    aria = open_stub_page()
    question = "What is the capital of France?"
    stub_aria.send({"type": "transcript", "turn_id": "t1", "text": question, "final": True})
    answer(stub_aria, aria, "t1", ANSWER, HEARD)
    # A heard text that is not a prefix of the answer (reworded): heard as sent, the rest after its last word.
    stub_aria.send({"type": "transcript", "turn_id": "t2", "text": "And of Italy?", "final": True})
    answer(stub_aria, aria, "t2", "Rome is the capital of Italy, on the Tiber.", "Rome's the capital")
    # Nothing heard: the whole answer is marked.
    answer(stub_aria, aria, "t3", "Shall I go on?", "")

    first = bubble(aria, 0)
    assert first["interrupted"] is True
    assert first["heard"] == HEARD
    assert first["unheard"].strip() == ANSWER[len(HEARD) :].strip()
    assert f"{first['heard']} {first['unheard']}".split() == ANSWER.split()
    assert first["title"] == "not heard"
    assert first["exact"] == "true"
    assert first["struck"] == "line-through"
    assert first["colour"] != first["heardColour"], "the unheard part looks like the heard one"
    assert first["badge"] == f"heard: “{HEARD}”"
    second = bubble(aria, 1)
    assert second["heard"] == "Rome's the capital"
    assert second["unheard"].strip() == "of Italy, on the Tiber."
    assert second["exact"] == "false"
    third = bubble(aria, 2)
    assert third["heard"] == ""
    assert third["unheard"].strip() == "Shall I go on?"
    assert third["badge"] == "nothing was heard"

    # The split itself: whitespace aside, the heard text is found in the answer as streamed.
    page = aria.page
    assert page.evaluate(SPLIT, ["Hello  there,\nworld. More.", "Hello there, world."]) == {
        "heard": "Hello  there,\nworld.",
        "unheard": " More.",
        "exact": True,
    }
    assert page.evaluate(SPLIT, ["All of it.", "All of it."])["unheard"] == ""
    assert page.evaluate(SPLIT, ["Hello world again", "hello, WORLD"])["unheard"] == " again"
    page.locator(".msg.assistant").first.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "page-heard.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=ARTIFACTS / "page-heard-dark.png")
    assert aria.problems == []


def test_resumed_history_shows_what_was_heard(open_stub_page: OpenPage, stub_aria: StubAria) -> None:
    stub_aria.session = {**session_message(), "resumed": True}
    aria = open_stub_page()
    now = time.time()
    entries = [
        {"role": "user", "content": "What is the capital of France?", "modality": "audio", "timestamp": now},
        {"role": "assistant", "content": HEARD, "interrupted": True, "timestamp": now},
    ]
    stub_aria.send({"type": "history", "session_id": "s_stub", "messages": entries})
    aria.wait_for("t.history && t.history.length === 2", 5, "the history message")
    # Today's history entries carry only what was heard: shown as the answer, marked interrupted.
    first = bubble(aria, 0)
    assert first["heard"] == HEARD
    assert first["unheard"] is None
    assert first["badge"] == f"heard: “{HEARD}”"
    # With the whole answer (a `generated` field, once the server sends it) the rest is marked too.
    aria.page.evaluate(
        """async ([heard, answer]) => (await import('/chat.js')).showHistory([
             {role: 'assistant', content: heard, generated: answer, interrupted: true},
           ])""",
        [HEARD, ANSWER],
    )
    second = bubble(aria, 1)
    assert second["heard"] == HEARD
    assert second["unheard"].strip() == ANSWER[len(HEARD) :].strip()
    assert second["title"] == "not heard"
    aria.page.screenshot(path=ARTIFACTS / "page-heard-history.png")
    assert aria.problems == []
