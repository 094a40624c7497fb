"""Wire messages generated from proto/mycelium.proto (do not edit mycelium_pb2.py by hand)."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from mycelium.errors import InvalidMessage

M = TypeVar("M", bound=Message)


def decode_exact(message_type: type[M], data: bytes) -> M:
    """Parse protobuf bytes, turning every decoding failure into InvalidMessage."""
    message = message_type()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError, TypeError, RuntimeError) as error:
        raise InvalidMessage(f"undecodable {message_type.__name__}: {error}") from None
    return message
