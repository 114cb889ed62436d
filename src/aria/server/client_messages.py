"""The messages a client sends over Aria's WebSocket protocol (``docs/protocol.md``): the models of the
:data:`ClientMessage` union (``control`` messages are a nested union on ``action``), re-exported by
:mod:`aria.server.messages`."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from aria.server.message_base import (
    JPEG_MAGIC,
    MAX_ID_CHARS,
    PNG_MAGIC,
    ClientModel,
    check_chars,
    describe_image,
    limits_of,
    models_of,
)

__all__ = [
    "CLIENT_MODELS",
    "ClientMessage",
    "ConfirmActionControl",
    "ControlMessage",
    "ImageMessage",
    "InterruptControl",
    "PingMessage",
    "PlaybackMessage",
    "SetWatchControl",
    "StartControl",
    "SwitchModeControl",
    "TextMessage",
    "UpdateConfigControl",
]


_Id = Annotated[str, Field(max_length=MAX_ID_CHARS)]


class TextMessage(ClientModel):
    type: Literal["text"] = "text"
    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _chars(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise PydanticCustomError("string_blank", "must hold more than white space")
        return check_chars(value, info)


class ImageMessage(ClientModel):
    """An image with an optional question. :attr:`image` holds the decoded bytes."""

    type: Literal["image"] = "image"
    data: str = Field(min_length=1, repr=False)
    format: Literal["jpeg", "png"]
    text: str | None = None

    _image: bytes = PrivateAttr(default=b"")

    @field_validator("text")
    @classmethod
    def _chars(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_chars(value, info)

    @property
    def image(self) -> bytes:
        return self._image

    @model_validator(mode="after")
    def _decode(self, info: ValidationInfo) -> ImageMessage:
        limit = limits_of(info).max_image_bytes
        data = self.data
        if data.startswith("data:"):  # a data URL, as canvas.toDataURL() makes
            _, _, data = data.partition(",")
        if len(data) > 4 * (limit // 3 + 1) + 4:
            raise PydanticCustomError(
                "message_too_large",
                "image data is about {size} bytes; the limit is {limit} (limits.max_image_bytes)",
                {"field": "data", "size": len(data) * 3 // 4, "limit": limit},
            )
        try:
            image = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError(
                "bad_image", "image data is not valid base64", {"field": "data"}
            ) from None
        if len(image) > limit:
            raise PydanticCustomError(
                "message_too_large",
                "image is {size} bytes; the limit is {limit} (limits.max_image_bytes)",
                {"field": "data", "size": len(image), "limit": limit},
            )
        magic = JPEG_MAGIC if self.format == "jpeg" else PNG_MAGIC
        if not image.startswith(magic):
            raise PydanticCustomError(
                "bad_image",
                "format is '{format}' but the data is {what}",
                {"field": "data", "format": self.format, "what": describe_image(image)},
            )
        self._image = image
        return self


class InterruptControl(ClientModel):
    type: Literal["control"] = "control"
    action: Literal["interrupt"] = "interrupt"


class SwitchModeControl(ClientModel):
    type: Literal["control"] = "control"
    action: Literal["switch_mode"] = "switch_mode"
    mode: _Id = Field(min_length=1)
    #: For a mode that watches the camera: the condition to watch for.
    watch: str | None = None

    @field_validator("watch")
    @classmethod
    def _watch_chars(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_chars(value, info)


class SetWatchControl(ClientModel):
    """Set (or, with an empty string, clear) the condition the active monitor watches for."""

    type: Literal["control"] = "control"
    action: Literal["set_watch"] = "set_watch"
    watch: str

    @field_validator("watch")
    @classmethod
    def _watch_chars(cls, value: str, info: ValidationInfo) -> str:
        return check_chars(value, info)


class ConfirmActionControl(ClientModel):
    type: Literal["control"] = "control"
    action: Literal["confirm_action"] = "confirm_action"
    id: _Id
    accept: bool


class UpdateConfigControl(ClientModel):
    type: Literal["control"] = "control"
    action: Literal["update_config"] = "update_config"
    config: dict[str, Any]


class StartControl(ClientModel):
    type: Literal["control"] = "control"
    action: Literal["start"] = "start"


ControlMessage = Annotated[
    InterruptControl
    | SwitchModeControl
    | SetWatchControl
    | ConfirmActionControl
    | UpdateConfigControl
    | StartControl,
    Field(discriminator="action"),
]


class PlaybackMessage(ClientModel):
    type: Literal["playback"] = "playback"
    turn_id: _Id
    played_ms: float = Field(ge=0, allow_inf_nan=False)


class PingMessage(ClientModel):
    type: Literal["ping"] = "ping"
    id: _Id | None = None


ClientMessage = Annotated[
    TextMessage | ImageMessage | ControlMessage | PlaybackMessage | PingMessage,
    Field(discriminator="type"),
]

CLIENT_MODELS: tuple[type[BaseModel], ...] = models_of(ClientMessage)
