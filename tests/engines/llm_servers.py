"""Real local HTTP servers that speak the language model backends' wire formats, for tests.

* :class:`OpenAIServer`: ``GET /v1/models`` and streamed ``POST /v1/chat/completions`` (Server-Sent Events
  with role, content and logprobs deltas, tool call pieces by index, a finish reason and ``data: [DONE]``);
* :class:`OllamaServer`: ``GET /api/tags`` and ``POST /api/chat`` (NDJSON lines, a final ``done`` line with
  ``eval_count`` / ``eval_duration``; a model that is not pulled gets Ollama's 404).

Each runs :mod:`http.server` on ``127.0.0.1:0`` in a thread (so synchronous ``check()`` calls work from
async tests too), answers with HTTP/1.1 chunked bodies like the real servers, and follows a mutable
:class:`Script`: the reply's tokens, a delay before the first byte and between tokens, an error status, a
stream cut after K tokens (abruptly, or with a clean end of body but no end-of-answer marker), an error
event mid-answer. It records every request (:attr:`ScriptedServer.requests`, JSON bodies parsed) and sets
:attr:`ScriptedServer.disconnected` when a client goes away mid-answer.

Use as a context manager: ``with OpenAIServer(Script(tokens=["Hi", "!"])) as server: ...``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import zip_longest
from typing import Any, Literal, Self

__all__ = ["OllamaServer", "OpenAIServer", "Received", "Script", "ScriptedServer"]


@dataclass
class Script:
    """What the server does with the next requests (change it between requests as needed)."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", " there", ",", " friend", "."])
    first_byte_delay_s: float = 0.0
    token_delay_s: float = 0.0
    #: Status for chat requests; anything but 200 answers ``error`` in the backend's error format.
    status: int = 200
    error: str = "the model exploded"
    #: Stop after this many content tokens: ``abrupt`` drops the connection mid-body, ``clean`` ends the
    #: body properly but without the end-of-answer marker (``[DONE]`` / finish reason, or ``done``).
    cut_after: int | None = None
    cut: Literal["abrupt", "clean"] = "abrupt"
    #: Send an error event after this many tokens, then end the answer.
    error_after: int | None = None
    #: Tool calls as (name, JSON arguments); OpenAI streams each in pieces, Ollama sends them whole.
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    #: Interleave the pieces of several tool calls (tests assembly by index).
    interleave_tool_calls: bool = False
    #: One log-probability per token (OpenAI only).
    logprobs: list[float] | None = None
    models: list[str] = field(default_factory=lambda: ["tiny-chat"])
    #: Keep the body open this long after the end-of-answer marker before ending it.
    hold_open_s: float = 0.0
    #: Ollama's reported decoding time for the whole answer.
    eval_duration_ns: int = 250_000_000

    @property
    def reply(self) -> str:
        return "".join(self.tokens)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    #: The client's port: the same for requests sent over one kept-alive connection.
    client_port: int


class _Disconnected(Exception):
    """The client went away while the server was writing."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 10.0

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests` instead
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as real servers do
        self.server.owner.track(self.connection, add=True)

    def finish(self) -> None:
        self.server.owner.track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner.requests.append(Received(self.command, path, headers, body, int(self.client_address[1])))
        try:
            owner.route(self, path, body)
        except (_Disconnected, BrokenPipeError, ConnectionResetError):
            owner.disconnected.set()
            self.close_connection = True

    # -- writing helpers for the routes ----------------------------------------------------------------

    def send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _Disconnected from exc
        self.server.owner.chunks_sent += 1

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def cut(self, how: str) -> None:
        if how == "clean":
            self.end_stream()
        else:  # drop the connection without the body's terminating chunk
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ScriptedServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # recorded, never printed
        import sys

        self.owner.errors.append(sys.exc_info()[1])


class ScriptedServer:
    """A scripted HTTP server in a background thread; subclasses implement :meth:`route`."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.requests: list[Received] = []
        self.errors: list[BaseException | None] = []
        #: Set when a client went away while an answer was being written.
        self.disconnected = threading.Event()
        self.chunks_sent = 0
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        with self._lock:
            for connection in self._connections:  # wake handlers waiting on kept-alive connections
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join()

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def chat_requests(self) -> list[Received]:
        return [r for r in self.requests if r.method == "POST"]

    @property
    def last_body(self) -> Any:
        return self.chat_requests()[-1].body

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when the server is closing."""
        if seconds > 0:
            self._closing.wait(seconds)

    def route(self, handler: _Handler, path: str, body: Any) -> None:
        raise NotImplementedError


def _pieces(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class OpenAIServer(ScriptedServer):
    """An OpenAI-compatible chat completions server (as vLLM or llama.cpp's server answer)."""

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def route(self, handler: _Handler, path: str, body: Any) -> None:
        script = self.script
        if handler.command == "GET" and path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "test"} for m in script.models
            ]
            handler.send_json(200, {"object": "list", "data": data})
        elif handler.command == "POST" and path == "/v1/chat/completions":
            self.pause(script.first_byte_delay_s)
            if script.status != 200:
                error = {"message": script.error, "type": "invalid_request_error", "code": None}
                handler.send_json(script.status, {"error": error})
            else:
                self._stream(handler, body)
        else:
            handler.send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _stream(self, handler: _Handler, body: Any) -> None:
        script = self.script
        model = body.get("model", "")

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time())}
            chunk.update({"model": model, "choices": [choice]})
            handler.write_chunk(f"data: {json.dumps(chunk)}\n\n".encode())

        handler.start_stream("text/event-stream")
        event({"role": "assistant", "content": ""})
        for index, token in enumerate(script.tokens):
            if index == script.cut_after:
                return handler.cut(script.cut)
            if index == script.error_after:
                error = {"error": {"message": script.error, "type": "server_error"}}
                handler.write_chunk(f"data: {json.dumps(error)}\n\n".encode())
                return handler.end_stream()
            if index:
                self.pause(script.token_delay_s)
            extra: dict[str, Any] = {}
            if script.logprobs is not None:
                entry = {"token": token, "logprob": script.logprobs[index], "top_logprobs": []}
                extra["logprobs"] = {"content": [entry]}
            event({"content": token}, **extra)
        calls: list[list[dict[str, Any]]] = []
        for index, (name, arguments) in enumerate(script.tool_calls):
            first = {"index": index, "id": f"call_{index}_x", "type": "function"}
            first["function"] = {"name": name, "arguments": ""}
            calls.append(
                [first, *({"index": index, "function": {"arguments": p}} for p in _pieces(arguments))]
            )
        if script.interleave_tool_calls:  # round robin: a piece of each call in turn
            order = [piece for turn in zip_longest(*calls) for piece in turn if piece is not None]
        else:
            order = [piece for call in calls for piece in call]
        for piece in order:
            event({"tool_calls": [piece]})
        if script.cut_after is not None and script.cut_after >= len(script.tokens):
            return handler.cut(script.cut)
        event({}, "tool_calls" if script.tool_calls else "stop")
        handler.write_chunk(b"data: [DONE]\n\n")
        self.pause(script.hold_open_s)
        handler.end_stream()
        return None


class OllamaServer(ScriptedServer):
    """Ollama's native API."""

    @property
    def base_url(self) -> str:
        return self.root

    def _pulled(self, model: str) -> bool:
        return model in self.script.models or f"{model}:latest" in self.script.models

    def route(self, handler: _Handler, path: str, body: Any) -> None:
        script = self.script
        if handler.command == "GET" and path == "/api/tags":
            models = [
                {
                    "name": m,
                    "model": m,
                    "modified_at": "2024-11-20T10:00:00Z",
                    "size": 1_000_000,
                    "digest": "0" * 64,
                }
                for m in script.models
            ]
            handler.send_json(200, {"models": models})
        elif handler.command == "GET" and path == "/api/version":
            handler.send_json(200, {"version": "0.6.0"})
        elif handler.command == "POST" and path == "/api/generate":  # no prompt: load or unload
            model = body.get("model", "")
            if not self._pulled(model):
                handler.send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
            else:
                reason = "unload" if body.get("keep_alive") == 0 else "load"
                handler.send_json(200, {"model": model, "response": "", "done": True, "done_reason": reason})
        elif handler.command == "POST" and path == "/api/chat":
            self.pause(script.first_byte_delay_s)
            model = body.get("model", "")
            if not self._pulled(model):
                handler.send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
            elif script.status != 200:
                handler.send_json(script.status, {"error": script.error})
            else:
                self._stream(handler, model)
        else:
            handler.send_json(404, {"error": "404 page not found"})

    def _stream(self, handler: _Handler, model: str) -> None:
        script = self.script

        def line(message: dict[str, Any], done: bool = False, **extra: Any) -> None:
            payload = {
                "model": model,
                "created_at": "2024-11-20T10:00:00.000Z",
                "message": message,
                "done": done,
            }
            handler.write_chunk(json.dumps({**payload, **extra}).encode() + b"\n")

        handler.start_stream("application/x-ndjson")
        for index, token in enumerate(script.tokens):
            if index == script.cut_after:
                return handler.cut(script.cut)
            if index == script.error_after:
                handler.write_chunk(json.dumps({"error": script.error}).encode() + b"\n")
                return handler.end_stream()
            if index:
                self.pause(script.token_delay_s)
            line({"role": "assistant", "content": token})
        if script.tool_calls:
            calls = [{"function": {"name": n, "arguments": json.loads(a)}} for n, a in script.tool_calls]
            line({"role": "assistant", "content": "", "tool_calls": calls})
        if script.cut_after is not None and script.cut_after >= len(script.tokens):
            return handler.cut(script.cut)
        line(
            {"role": "assistant", "content": ""},
            True,
            done_reason="stop",
            total_duration=script.eval_duration_ns + 50_000_000,
            load_duration=10_000_000,
            prompt_eval_count=12,
            prompt_eval_duration=20_000_000,
            eval_count=len(script.tokens),
            eval_duration=script.eval_duration_ns,
        )
        self.pause(script.hold_open_s)
        handler.end_stream()
        return None
