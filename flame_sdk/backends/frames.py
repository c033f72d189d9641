"""Binary frames of the broker backends: a fixed header, five short strings, then payload."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"FLMF"
VERSION = 1
# magic, version, kind, message id, chunk index, chunk count, total payload length
_FIXED = struct.Struct("!4sBBQIIQ")
_STRING_FIELDS = ("job_id", "channel", "group", "role", "sender")
MAX_STRING = 255


class FrameError(ValueError):
    """A frame that cannot be decoded (truncated, bad magic/version/kind, bad strings)."""


class Kind(IntEnum):
    DATA = 1  # a chunk of an application message
    JOIN = 2  # a newcomer announces itself (broadcast)
    HELLO = 3  # an existing end answers a JOIN (unicast to the newcomer)
    LEAVE = 4  # orderly departure (broadcast)
    BEAT = 5  # heartbeat (broadcast)
    SHM = 6  # a whole message in a shared-memory segment: the payload names it (unicast)


@dataclass(frozen=True, slots=True)
class Header:
    kind: Kind
    job_id: str
    channel: str
    group: str
    role: str  # the sender's role
    sender: str  # the sender's end id
    message_id: int = 0
    index: int = 0
    count: int = 1
    total: int = 0  # length of the whole (reassembled) payload

    def encode(self) -> bytes:
        parts = [
            _FIXED.pack(
                MAGIC, VERSION, self.kind, self.message_id, self.index, self.count, self.total
            )
        ]
        for name in _STRING_FIELDS:
            raw = getattr(self, name).encode()
            if len(raw) > MAX_STRING:
                raise ValueError(f"frame field {name!r} is longer than {MAX_STRING} bytes")
            parts.append(bytes((len(raw),)) + raw)
        return b"".join(parts)


def decode(frame: bytes) -> tuple[Header, memoryview]:
    """Split a frame into its header and a zero-copy view of its payload; raise FrameError."""
    view = memoryview(frame)
    if len(view) < _FIXED.size:
        raise FrameError(f"frame of {len(view)} bytes is shorter than the fixed header")
    magic, version, kind, message_id, index, count, total = _FIXED.unpack_from(view)
    if magic != MAGIC:
        raise FrameError("bad magic")
    if version != VERSION:
        raise FrameError(f"unsupported frame version {version}")
    try:
        kind = Kind(kind)
    except ValueError:
        raise FrameError(f"unknown frame kind {kind}") from None
    if count < 1 or index >= count:
        raise FrameError(f"bad chunk index {index} of {count}")
    offset = _FIXED.size
    strings: list[str] = []
    for name in _STRING_FIELDS:
        if offset >= len(view):
            raise FrameError(f"frame truncated before field {name!r}")
        size = view[offset]
        end = offset + 1 + size
        if end > len(view):
            raise FrameError(f"frame truncated inside field {name!r}")
        try:
            strings.append(str(view[offset + 1 : end], "utf-8"))
        except UnicodeDecodeError:
            raise FrameError(f"field {name!r} is not UTF-8") from None
        offset = end
    job_id, channel, group, role, sender = strings
    header = Header(kind, job_id, channel, group, role, sender, message_id, index, count, total)
    return header, view[offset:]
