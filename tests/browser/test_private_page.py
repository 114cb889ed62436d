"""A private server (``session.persist = false``) says so on the page; a server that keeps conversations
does not. The real ``aria serve`` with the fake engines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import (
    ARTIFACTS,
    FAKE_ENGINES,
    AriaServer,
    OpenPage,
    _serve,
    page_opener,
    require_browser,
)

require_browser()


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AriaServer]:
    settings = {**FAKE_ENGINES, "ARIA_SESSION__PERSIST": "false"}
    yield from _serve(tmp_path_factory, settings, "browser-private-server.log")


@pytest.fixture
def open_private_page(playwright_driver: Any, private_server: AriaServer) -> Iterator[OpenPage]:
    yield from page_opener(playwright_driver, f"{private_server.url}/")


def test_a_private_server_says_nothing_is_saved(open_private_page: OpenPage) -> None:
    aria = open_private_page()
    aria.wait_for("t.session && t.session.private === true", 10, "the session message of a private server")
    note = aria.page.locator("#private-note")
    note.wait_for(state="visible")
    assert "nothing of this conversation is saved" in note.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    aria.page.locator("#conversations").screenshot(path=str(ARTIFACTS / "private-note.png"))
    assert not aria.problems, aria.problems


def test_a_server_that_keeps_conversations_shows_no_private_note(open_fake_page: Any) -> None:
    aria = open_fake_page()
    aria.wait_for("t.session && t.session.private === false", 10, "the session message")
    assert aria.page.locator("#private-note").is_hidden()
