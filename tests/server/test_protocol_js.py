"""The page's ``static/protocol.js`` says what the wire models say: the binary tags, and one JSDoc typedef per
message model (and per object they carry) with the same fields and types; ``[name]``: a field a client
message may leave out (the server writes every field of its own).

The typedef block is rendered from the pydantic models here; when a model changes, the test fails with
the block to paste (``python -m tests.server.test_protocol_js`` prints it).
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from aria.server import messages as wire

PROTOCOL_JS = Path(wire.__file__).parent / "static" / "protocol.js"
#: The modules the wire models are defined in (``messages`` re-exports them).
WIRE_MODULES = frozenset(
    {"aria.server.message_base", "aria.server.server_messages", "aria.server.client_messages"}
)
BEGIN = "// --- generated from src/aria/server/messages.py (tests/server/test_protocol_js.py) ---"
END = "// --- end of generated ---"


def _models() -> list[type[BaseModel]]:
    """Every message model, then every model they carry, each once, in a stable order."""
    seen: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for info in model.model_fields.values():
            for nested in _nested(info.annotation):
                visit(nested)

    for model in (*wire.SERVER_MODELS, *wire.CLIENT_MODELS):
        visit(model)
    return seen


def _nested(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _nested(arg)]


def js_type(annotation: Any) -> str:
    """The JSDoc type of a field's annotation."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return js_type(get_args(annotation)[0])
    if origin is Literal:
        return "|".join(f'"{a}"' if isinstance(a, str) else str(a).lower() for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [js_type(a) for a in get_args(annotation)]
        return "(" + "|".join("null" if p == "None" else p for p in parts) + ")"
    if origin is list:
        inner = js_type(get_args(annotation)[0])
        return f"Array<{inner}>"
    if origin is dict:
        return f"Object<string, {js_type(get_args(annotation)[1])}>"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    names = {str: "string", int: "number", float: "number", bool: "boolean", bytes: "string"}
    if annotation in names:
        return names[annotation]
    if annotation is Any:
        return "*"
    raise AssertionError(f"no JSDoc type for {annotation!r}: extend js_type")


def render() -> str:
    """The typedef block protocol.js must hold."""
    blocks = []
    for model in _models():
        lines = ["/**"]
        doc = (model.__doc__ or "").strip()
        if doc and model.__module__ in WIRE_MODULES and "pydantic" not in doc.lower():
            lines += [f" * {line}".rstrip() for line in doc.splitlines()[:1]]
        lines.append(f" * @typedef {{Object}} {model.__name__}")
        for name, info in model.model_fields.items():
            # The server writes every field; a client may leave out one with a default (not the tags).
            optional = (
                model in wire.CLIENT_MODELS and not info.is_required() and name not in ("type", "action")
            )
            key = f"[{name}]" if optional else name
            lines.append(f" * @property {{{js_type(info.annotation)}}} {key}")
        lines.append(" */")
        blocks.append("\n".join(lines))
    server = " | ".join(m.__name__ for m in wire.SERVER_MODELS)
    client = " | ".join(m.__name__ for m in wire.CLIENT_MODELS)
    blocks.append(f"/** @typedef {{{server}}} ServerMessage */")
    blocks.append(f"/** @typedef {{{client}}} ClientMessage */")
    return "\n\n".join(blocks)


def _generated(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


def test_the_typedefs_are_the_wire_models() -> None:
    expected = render()
    actual = _generated(PROTOCOL_JS.read_text(encoding="utf-8"))
    assert actual == expected, f"protocol.js is out of date; its generated block should be:\n{expected}"


def test_every_message_type_has_its_typedef_with_the_type_literal() -> None:
    text = PROTOCOL_JS.read_text(encoding="utf-8")
    for model in (*wire.SERVER_MODELS, *wire.CLIENT_MODELS):
        literal = model.model_fields["type"].annotation
        (kind,) = get_args(literal)
        block = re.search(rf"@typedef {{Object}} {model.__name__}\n(.*?)\*/", text, re.S)
        assert block is not None, model.__name__
        assert f'@property {{"{kind}"}} type\n' in block.group(1), model.__name__


def test_the_binary_tags_and_version_match() -> None:
    text = PROTOCOL_JS.read_text(encoding="utf-8")
    assert f"export const TAG_AUDIO = 0x{wire.AUDIO_TAG:02x};" in text
    assert f"export const TAG_VIDEO = 0x{wire.VIDEO_TAG:02x};" in text
    assert f"export const PROTOCOL_VERSION = {wire.PROTOCOL_VERSION};" in text


def test_the_page_takes_its_tags_from_protocol_js_only() -> None:
    static = PROTOCOL_JS.parent
    for path in static.glob("*.js"):
        if path.name == "protocol.js":
            continue
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"const TAG_\w+\s*=", source), f"{path.name} defines its own binary tag"


if __name__ == "__main__":
    print(render())
