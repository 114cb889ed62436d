"""The conversation list on the page, against the real ``aria serve`` with the fake engines and Debian's
Chromium: past conversations with their titles (newest first), a new chat, opening one (the page
reconnects with its ``?session_id=`` and shows the history), rename, export, delete after a confirmation; a
conversation opened by its URL; voices by name and language; the phone layout."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser.conftest import AriaPage, AriaServer, OpenPage, require_browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
require_browser()

pytestmark = pytest.mark.timeout(120)


def say(aria: AriaPage, text: str) -> None:
    """Type ``text``, send it, and wait for its answer and the list to name the conversation."""
    done = len(aria.state()["responses"])
    aria.page.fill("#text-input", text)
    aria.page.press("#text-input", "Enter")
    aria.wait_for(f"t.responses.length > {done}", 15, f"the answer to {text!r}")


def titles(aria: AriaPage) -> list[str]:
    return [t.strip() for t in aria.page.locator("#conv-list .conv-title").all_inner_texts()]


def keys(aria: AriaPage) -> dict[str, str]:
    """The resume keys the page keeps for its conversations, by session id."""
    script = "JSON.parse(localStorage.getItem('aria.session_keys') || '{}')"
    found: dict[str, str] = aria.page.evaluate(script)
    return found


def owner(aria: AriaPage) -> dict[str, str]:
    """The page's keys as a request presents them (what its own list and export send)."""
    return {"X-Aria-Session-Key": ",".join(keys(aria).values())}


def url_session(aria: AriaPage) -> str | None:
    return parse_qs(urlsplit(aria.page.url).query).get("session_id", [None])[0]


def test_list_new_chat_open_rename_export_delete(
    open_fake_page: OpenPage, fake_aria_server: AriaServer
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    aria = open_fake_page()
    page = aria.page
    first = aria.state()["session"]["session_id"]
    assert url_session(aria) == first  # the conversation has a URL
    say(aria, "What is the capital of France?")
    aria.wait_for("(t.conversations || []).length === 1", 5, "the first conversation listed")
    assert titles(aria) == ["What is the capital of France?"]

    # New chat: a new session, an empty log, its own URL.
    page.click("#new-chat")
    aria.wait_for(f"t.session && t.session.session_id !== {first!r}", 10, "the new session")
    second = aria.state()["session"]["session_id"]
    assert url_session(aria) == second
    assert page.locator("#log .msg").count() == 0
    say(aria, "Tell me a joke about penguins")
    aria.wait_for("(t.conversations || []).length === 2", 5, "both conversations listed")
    assert titles(aria) == ["Tell me a joke about penguins", "What is the capital of France?"]  # newest first
    assert (
        page.locator("#conv-list .conv[aria-current] .conv-title").inner_text()
        == "Tell me a joke about penguins"
    )

    # Open the first: the page reconnects with its id and shows its history.
    page.locator("#conv-list .conv", has_text="capital of France").locator(".conv-open").click()
    aria.wait_for(
        f"t.session && t.session.session_id === {first!r} && t.session.resumed", 10, "the resumed one"
    )
    aria.wait_for("(t.history || []).length >= 2", 5, "its history")
    assert url_session(aria) == first
    log = page.locator("#log").inner_text()
    assert "What is the capital of France?" in log
    assert "penguins" not in log
    page.screenshot(path=ARTIFACTS / "page-conversations.png")

    # Rename it.
    item = page.locator("#conv-list .conv", has_text="capital of France")
    item.get_by_role("button", name="Rename").click()
    page.locator("#conv-list .conv-rename input").fill("Geography questions")
    page.locator("#conv-list .conv-rename input").press("Enter")
    aria.wait_for("t.conversations.some((c) => c.title === 'Geography questions')", 5, "the new name")
    assert "Geography questions" in titles(aria)
    assert httpx.get(f"{fake_aria_server.url}/sessions").json()["sessions"] == []  # without its keys
    listed = httpx.get(f"{fake_aria_server.url}/sessions", headers=owner(aria)).json()["sessions"]
    assert {s["session_id"]: s["title"] for s in listed}[first] == "Geography questions"

    # Export it as Markdown.
    link = page.locator("#conv-list .conv", has_text="Geography questions").locator("a.conv-act")
    href = link.get_attribute("href")
    assert href is not None
    assert f"/sessions/{first}/export" in href
    assert "format=markdown" in href
    assert page.request.get(href).status == 403  # a plain link is not enough: the key is needed
    markdown = page.request.get(href, headers=owner(aria)).text()
    assert markdown.startswith("# Geography questions")
    assert "What is the capital of France?" in markdown

    # Delete the other: asked first; "Keep" keeps it.
    other = page.locator("#conv-list .conv", has_text="penguins")
    other.get_by_role("button", name="Delete").click()
    confirm = page.locator("#conv-list .conv-confirm")
    assert "cannot be undone" in confirm.inner_text()
    page.screenshot(path=ARTIFACTS / "page-conversations-delete.png")
    confirm.get_by_role("button", name="Keep it").click()
    assert len(titles(aria)) == 2
    other = page.locator("#conv-list .conv", has_text="penguins")
    other.get_by_role("button", name="Delete").click()
    page.locator("#conv-list .conv-confirm").get_by_role("button", name="Yes, delete").click()
    aria.wait_for("t.conversations.length === 1", 5, "the deleted one gone")
    assert titles(aria) == ["Geography questions"]
    listed = httpx.get(f"{fake_aria_server.url}/sessions", headers=owner(aria)).json()["sessions"]
    assert [s["session_id"] for s in listed] == [first]
    assert aria.problems == []


def test_a_conversation_opened_by_its_url_shows_its_history(open_fake_page: OpenPage) -> None:
    aria = open_fake_page()
    say(aria, "Remember the blue umbrella")
    session_id = aria.state()["session"]["session_id"]
    # Another browser opens it by a link that carries its key (after #key=): it takes the session over.
    other = open_fake_page(query=f"?session_id={session_id}#key={keys(aria)[session_id]}")
    other.wait_for("(t.history || []).length >= 2", 5, "the history")
    assert other.state()["session"]["session_id"] == session_id
    assert other.state()["session"]["resumed"] is True
    assert "Remember the blue umbrella" in other.page.locator("#log").inner_text()
    other.wait_for(f"(t.conversations || []).some((c) => c.session_id === {session_id!r})", 5, "the list")
    current = other.page.locator("#conv-list .conv[aria-current] .conv-title").inner_text()
    assert current == "Remember the blue umbrella"
    other.page.screenshot(path=ARTIFACTS / "page-conversation-by-url.png")
    # Back in the first tab, a new chat and the browser's Back button return to it.
    aria.page.click("#new-chat")
    aria.wait_for(f"t.session && t.session.session_id !== {session_id!r}", 10, "the new chat")
    aria.page.go_back()
    aria.wait_for(f"t.session && t.session.session_id === {session_id!r}", 10, "back to the conversation")
    aria.wait_for("(t.history || []).length >= 2", 5, "its history again")
    assert aria.problems == []
    assert other.problems == []


def test_voices_have_names_and_languages(open_fake_page: OpenPage) -> None:
    aria = open_fake_page()
    described = aria.page.evaluate(
        """async () => {
          const { describeVoice, groupVoices } = await import('./voices.js');
          const ids = ['en-US', 'en-GB-x-rp', 'de', 'cmn', 'fr-CH', 'af_bella', 'bm_george', 'en-US+f3'];
          return {
            names: Object.fromEntries(ids.map((id) => [id, describeVoice(id).name])),
            groups: groupVoices(ids).map(([language, voices]) => [language, voices.map((v) => v.id)]),
          };
        }"""
    )
    names = described["names"]
    assert names["en-US"] == "American English"
    assert names["en-GB-x-rp"] == "English (Received Pronunciation)"
    assert names["de"] == "German"
    assert names["cmn"] == "Chinese (Mandarin)"
    assert names["fr-CH"] == "Swiss French"
    assert names["af_bella"] == "Bella (American, female)"
    assert names["bm_george"] == "George (British, male)"
    assert names["en-US+f3"] == "American English, f3"
    groups = dict(described["groups"])
    assert list(groups) == ["Chinese", "English", "French", "German"]
    assert set(groups["English"]) == {"en-US", "en-GB-x-rp", "af_bella", "bm_george", "en-US+f3"}


def test_phone_layout_fits_the_controls(open_fake_page: OpenPage) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    aria = open_fake_page(viewport=(390, 844))
    page = aria.page
    say(aria, "What can you do on a phone?")
    aria.wait_for("(t.conversations || []).length >= 1", 5, "the list")
    page.screenshot(path=ARTIFACTS / "page-conversations-phone.png")
    for selector in ("#chats-btn", "#mic-btn", "#stop-btn", "#text-input", "#send-btn", "#camera-btn"):
        box = page.locator(selector).bounding_box()
        assert box is not None, selector
        assert box["x"] >= 0, (selector, box)
        assert box["x"] + box["width"] <= 390, (selector, box)
        assert box["y"] >= 0, (selector, box)
        assert box["y"] + box["height"] <= 844, (selector, box)  # on the first screen
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    # The list is a drawer behind the Chats button.
    assert not page.locator("#conversations").is_visible()
    page.click("#chats-btn")
    page.wait_for_selector("#conversations .conv-open", state="visible")
    page.wait_for_timeout(300)  # the drawer's slide
    page.screenshot(path=ARTIFACTS / "page-conversations-phone-drawer.png")
    page.click("#new-chat")
    aria.wait_for("t.session && !t.session.resumed && t.conversations.length >= 1", 10, "a new chat")
    page.wait_for_selector("#conversations", state="hidden", timeout=2000)  # the drawer closed
    assert aria.problems == []
