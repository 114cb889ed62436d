"""The saved conversations over REST, each open only to its owner (:mod:`aria.server.ownership`).

==================================  ==================================================================
``GET /sessions``                    the sessions whose keys the request presents in
                                     ``X-Aria-Session-Key`` (comma-separated), all of them with the
                                     server's token; newest first: id, title, mode, created, updated,
                                     messages
``GET /sessions/{id}``               its title and history
``PATCH /sessions/{id}``             ``{"title": ...}`` renames it (empty: back to the first message)
``DELETE /sessions/{id}``            removes it
``GET /sessions/{id}/export``        ``?format=json|markdown``
==================================  ==================================================================

Each route on one session needs that session's key in ``X-Aria-Session-Key`` (or the server's token):
without it, **403** ``session_locked``; an unknown session is **404** ``unknown_session``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from aria.errors import InvalidInput
from aria.server.ownership import can_use, is_admin, keys_from, session_of_key
from aria.session.export import export_json, export_markdown
from aria.session.serialize import check_session_id

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter()


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _admin(request: Request) -> bool:
    return is_admin(request.query_params, request.headers, _runtime(request).settings.server.token)


def _summary_json(summary: Any) -> dict[str, Any]:
    return {
        "session_id": summary.id,
        "title": summary.title,
        "mode": summary.mode,
        "created": summary.created,
        "updated": summary.updated,
        "messages": summary.messages,
    }


def _owned(request: Request, session_id: str) -> tuple[Any, JSONResponse | None]:
    """The session if the request may use it, else the error response to send."""
    try:
        found = _runtime(request).sessions.get(check_session_id(session_id))
    except InvalidInput as exc:
        return None, JSONResponse({"code": "invalid_session", "message": str(exc)}, 400)
    if found is None:
        return None, JSONResponse({"code": "unknown_session", "message": f"no session {session_id!r}"}, 404)
    if not can_use(found, keys_from(request.headers), admin=_admin(request)):
        return None, JSONResponse(
            {
                "code": "session_locked",
                "message": "this session belongs to another client: send its key in X-Aria-Session-Key",
            },
            403,
        )
    return found, None


@router.get("/sessions")
async def _list_sessions(request: Request) -> dict[str, Any]:
    rt = _runtime(request)
    if _admin(request):
        return {"sessions": [_summary_json(s) for s in rt.sessions.list()]}
    by_id: dict[str, list[str]] = {}
    for key in keys_from(request.headers):
        session_id = session_of_key(key)
        if session_id is not None:
            by_id.setdefault(session_id, []).append(key)
    summaries = []
    for session_id, keys in by_id.items():
        try:
            found = rt.sessions.get(session_id)
        except InvalidInput:
            continue
        if found is not None and can_use(found, keys, admin=False):
            summary = found.summary()
            if summary.messages or summary.title:  # as the full list: none still empty
                summaries.append(summary)
    summaries.sort(key=lambda s: (s.updated, s.id), reverse=True)
    return {"sessions": [_summary_json(s) for s in summaries]}


@router.get("/sessions/{session_id}")
async def _read_session(session_id: str, request: Request) -> JSONResponse:
    from aria.server.ws import history_message  # the wire form of a history, shared with /ws

    found, refusal = _owned(request, session_id)
    if refusal is not None:
        return refusal
    history = [entry.model_dump(mode="json") for entry in history_message(found).messages]
    return JSONResponse(
        {"session_id": found.id, "title": found.title, "mode": found.mode, "history": history}
    )


@router.delete("/sessions/{session_id}")
async def _delete_session(session_id: str, request: Request) -> JSONResponse:
    found, refusal = _owned(request, session_id)
    if refusal is not None:
        return refusal
    _runtime(request).sessions.delete(found.id)
    return JSONResponse({"deleted": found.id})


@router.patch("/sessions/{session_id}")
async def _rename_session(session_id: str, request: Request) -> JSONResponse:
    """``{"title": "..."}`` names the conversation; an empty title goes back to its first message."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        return JSONResponse({"code": "invalid_json", "message": "send application/json"}, 415)
    found, refusal = _owned(request, session_id)
    if refusal is not None:
        return refusal
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("title"), str):
        return JSONResponse(
            {"code": "invalid_message", "message": 'send {"title": "..."} (text; empty resets it)'}, 400
        )
    try:
        renamed = _runtime(request).sessions.rename(found.id, body["title"])
    except InvalidInput as exc:
        return JSONResponse({"code": "invalid_session", "message": str(exc)}, 400)
    except OSError as exc:
        log.error("could not save session %s after renaming it: %s", found.id, exc)
        return JSONResponse({"code": "internal_error", "message": "could not save the session"}, 500)
    if renamed is None:
        return JSONResponse({"code": "unknown_session", "message": f"no session {session_id!r}"}, 404)
    return JSONResponse(_summary_json(renamed.summary()))


@router.get("/sessions/{session_id}/export")
async def _export_session(session_id: str, request: Request, format: str = "markdown") -> Response:
    found, refusal = _owned(request, session_id)
    if refusal is not None:
        return refusal
    if format == "json":
        return Response(export_json(found), media_type="application/json")
    if format in ("markdown", "md"):
        return PlainTextResponse(export_markdown(found), media_type="text/markdown; charset=utf-8")
    return JSONResponse({"code": "invalid_message", "message": "format must be json or markdown"}, 400)
