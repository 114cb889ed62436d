"""The HTTP application: the page, REST endpoints and the ``/ws`` WebSocket endpoint.

==========================  ===============================================================
``GET /``                    the browser client (static files, no build step)
``GET /health``              ``status`` ok / degraded / down / loading, each engine's state (the member of its
                             chain that serves), engines of ``limited`` quality with the fix, ``modes``
                             that cannot work with the engines at hand, first-run ``downloads``
``GET /models``              the engines per kind, the voices and the language models offered
``GET/POST /config``         the settings (secrets redacted); POST hot-reloads what can change
``GET /metrics``             Prometheus text: turn stage latencies, turns, errors, connections
``GET /sessions``            the caller's saved sessions (by their keys; all with the token), newest first
``GET /sessions/{id}``       a session's title and history, with its key (``PATCH {"title"}`` renames it,
                             ``DELETE`` removes it, ``/export?format=`` json|markdown): ``sessions_api``
``GET/POST /models/llm``     the language models on offer; switch the live one (:mod:`.models_api`)
``GET /dashboard``           the status dashboard, fed by ``GET /metrics/json`` (:mod:`.dashboard`)
``WS /ws``                   the conversation protocol (``docs/protocol.md``)
==========================  ===============================================================
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from aria._version import __version__
from aria.core.config import Settings, apply_update, redacted
from aria.core.logs import SecretFilter
from aria.core.metrics import CONTENT_TYPE
from aria.core.redact import redact, redact_tree
from aria.errors import AriaError, ConfigError
from aria.server import dashboard, models_api, openai_api, sessions_api
from aria.server.limits import BodyLimit, MalformedFrameLog
from aria.server.runtime import Runtime
from aria.server.ws import host_allowed, origin_allowed, serve_connection, token_ok

__all__ = ["create_app"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
#: Routes that need the token when one is configured (the page itself and /health stay open).
PROTECTED = ("/models", "/config", "/metrics", "/sessions", "/docs", "/openapi.json", "/v1/")
#: POST routes that take a file upload (multipart) instead of JSON.
MULTIPART = ("/v1/audio/transcriptions",)


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> FastAPI:
    rt = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.aclose()

    app = FastAPI(title="Aria", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.runtime = rt
    SecretFilter.install()  # the token must not reach logs through request lines or headers
    MalformedFrameLog.install()  # a client's bad frame is one warning line, not a traceback

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        """Every HTTP request: addressed to this server (no DNS rebinding); changes only from the server's
        own page or an allowed origin, as JSON (no cross-site form posts); the token on every API route."""
        server = rt.settings.server
        headers, path = request.headers, request.url.path
        if not host_allowed(headers.get("host"), server.host, server.allowed_hosts):
            return JSONResponse({"code": "invalid_host", "message": "unknown Host header"}, 400)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if not origin_allowed(headers.get("origin"), headers.get("host"), server.allowed_origins):
                return JSONResponse(
                    {"code": "forbidden_origin", "message": "cross-origin change refused"}, 403
                )
            if request.method == "POST" and not headers.get("content-type", "").startswith(
                ("application/json", "multipart/form-data") if path in MULTIPART else "application/json"
            ):
                return JSONResponse({"code": "invalid_json", "message": "send application/json"}, 415)
        if path.startswith(PROTECTED) and not token_ok(request.query_params, headers, server.token):
            return JSONResponse(
                {"code": "unauthorized", "message": "missing or wrong token"},
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        response: Response = await call_next(request)
        return response

    app.add_middleware(BodyLimit, limit=lambda: rt.settings.server.max_body_bytes)  # outermost

    @app.get("/health")
    async def health() -> JSONResponse:
        engines = rt.engine_states()
        probes = await rt.probe() if rt.ready.is_set() else {}
        for kind in ("stt", "llm", "tts"):
            if kind in probes:
                engines[kind]["healthy"] = probes[kind]["ok"]
                engines[kind]["detail"] = probes[kind]["detail"]
        status = rt.status()
        body = {
            "status": status,
            "version": __version__,
            "engines": engines,
            "sessions": len(rt.sessions),
            "connections": rt.connections,
            "residency": rt.residency.usage(),
            "breakers": rt.breakers(),
            "probes": probes,
            "limited": [limitation.as_dict() for limitation in rt.limited()],
            "downloads": rt.downloads(),
            "modes": {
                mode: {"available": available, "reason": reason}
                for mode, (available, reason) in rt.mode_availability().items()
            },
        }
        return JSONResponse(redact_tree(body), status_code=503 if status == "down" else 200)

    @app.get("/models")
    async def models() -> dict[str, Any]:
        result: dict[str, Any] = {"engines": {}, "voices": [], "llm_models": []}
        for kind in ("vad", "stt", "llm", "vision", "tts"):
            result["engines"][kind] = {
                "selected": rt.engine_states().get(kind, {}).get("name"),
                "registered": rt.registry.names(kind),
            }
        engines = rt.engines
        if engines is not None and engines.tts is not None:
            result["voices"] = list(engines.tts.capabilities.voices)
        if engines is not None and engines.llm is not None:
            lister = getattr(engines.llm, "list_models", None)
            if lister is not None:
                try:
                    result["llm_models"] = list(await lister())
                except AriaError as exc:
                    result["llm_models_error"] = str(exc)
        return dict(redact_tree(result))

    @app.get("/config")
    async def get_config() -> dict[str, Any]:
        return redacted(rt.settings)

    @app.post("/config")
    async def post_config(request: Request) -> JSONResponse:
        try:
            updates = await request.json()
        except ValueError:
            return JSONResponse({"code": "invalid_json", "message": "body must be a JSON object"}, 400)
        if not isinstance(updates, dict):
            return JSONResponse({"code": "invalid_json", "message": "body must be a JSON object"}, 400)
        try:
            rt.settings = apply_update(rt.settings, updates)
        except ConfigError as exc:
            return JSONResponse({"code": exc.code, "message": redact(str(exc)), "key": exc.key}, 400)
        log.info("configuration updated: %s", sorted(updates))
        return JSONResponse(redacted(rt.settings))

    @app.get("/metrics")
    async def metrics() -> Response:
        rt.refresh_gauges()
        return PlainTextResponse(rt.metrics.render(), media_type=CONTENT_TYPE)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await serve_connection(websocket, rt)

    app.include_router(models_api.router)  # /models/llm: the model picker
    app.include_router(dashboard.router)  # /dashboard, /metrics/json
    app.include_router(openai_api.router)  # /v1/realtime, /v1/audio/*, /v1/models: OpenAI-compatible
    app.include_router(sessions_api.router)  # /sessions: each conversation open to its owner
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    return app
