"""Frame header encoding and the decoder's refusal of every kind of malformed frame."""

from __future__ import annotations

import struct

import pytest

from flame_sdk.backends.frames import MAGIC, FrameError, Header, Kind, decode


def _header(**changes: object) -> Header:
    fields: dict[str, object] = {
        "kind": Kind.DATA, "job_id": "job", "channel": "param", "group": "g", "role": "trainer",
        "sender": "t1", "message_id": 2**63 + 5, "index": 3, "count": 7, "total": 123_456,
    }  # fmt: skip
    fields.update(changes)
    return Header(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field_and_the_payload() -> None:
    header = _header(channel="ch.with/odd#chars", sender="énd-ü")
    got, payload = decode(header.encode() + b"payload bytes")
    assert got == header
    assert bytes(payload) == b"payload bytes"


def test_payload_is_a_view_not_a_copy() -> None:
    frame = _header().encode() + b"x" * 100
    _, payload = decode(frame)
    assert isinstance(payload, memoryview) and payload.obj is frame


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "shorter than the fixed header"),
        (b"FLMF\x01", "shorter than the fixed header"),
        (b"ABCD" + _header().encode()[4:], "bad magic"),
        (MAGIC + b"\x09" + _header().encode()[5:], "unsupported frame version 9"),
        (_header().encode()[:5] + b"\x63" + _header().encode()[6:], "unknown frame kind 99"),
        (_header(index=7, count=7).encode(), "bad chunk index 7 of 7"),
        (_header(count=0, index=0).encode(), "bad chunk index 0 of 0"),
        (_header().encode()[:-1], "truncated inside field 'sender'"),
        (_header().encode()[:30], "truncated before field 'job_id'"),
    ],
)
def test_malformed_frames_raise_frame_error(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        decode(frame)


def test_non_utf8_string_is_refused() -> None:
    fixed = _header().encode()[:30]
    frame = fixed + b"\x02\xff\xfe" + b"\x00" * 4
    with pytest.raises(FrameError, match="'job_id' is not UTF-8"):
        decode(frame)


def test_too_long_field_is_refused_at_encoding() -> None:
    with pytest.raises(ValueError, match="'channel' is longer than 255 bytes"):
        _header(channel="c" * 256).encode()


def test_fixed_header_layout_is_stable() -> None:
    raw = _header(kind=Kind.BEAT, message_id=1, index=0, count=1, total=0).encode()
    assert struct.unpack_from("!4sBBQIIQ", raw) == (MAGIC, 1, Kind.BEAT, 1, 0, 1, 0)
