"""Wire format: round trips, and every malformed payload rejected with WireError."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest

from flame_sdk import wire
from flame_sdk.wire import Key, WireError


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fc.weight": rng.standard_normal((3, 4)).astype(np.float32),
        "fc.bias": np.arange(3, dtype=np.float64),
        "steps": np.array(7, dtype=np.int64),
        "mask": np.array([True, False]),
        "half": np.ones((2, 2), dtype=np.float16),
    }


def test_round_trip_weights_and_fields() -> None:
    w = _weights()
    message = {
        Key.WEIGHTS: w,
        Key.ROUND: 3,
        Key.DATASET_SIZE: 150,
        Key.EOT: False,
        "scores": np.arange(5, dtype=np.int32),
        Key.DATASAMPLER_METADATA: {"loss_low": 0.5, "deadline": None},
    }
    out = wire.decode(wire.encode(message))
    assert out[Key.ROUND] == 3 and out[Key.DATASET_SIZE] == 150 and out[Key.EOT] is False
    assert out[Key.DATASAMPLER_METADATA] == {"loss_low": 0.5, "deadline": None}
    assert list(out[Key.WEIGHTS]) == list(w)
    for name, value in w.items():
        got = out[Key.WEIGHTS][name]
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value)
        assert not got.flags.writeable  # a view of the immutable bytes
    np.testing.assert_array_equal(out["scores"], np.arange(5))


def test_decode_views_the_received_buffer_and_parts_join_to_encode() -> None:
    w = _weights()
    parts = wire.encode_parts({Key.WEIGHTS: w, Key.ROUND: 2})
    data = bytearray(b"".join(parts))
    assert bytes(data) == wire.encode({Key.WEIGHTS: w, Key.ROUND: 2})
    first = next(iter(w.values()))
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), first) for p in parts[1:])
    out = wire.decode(data)[Key.WEIGHTS]
    header_end = len(parts[0])
    assert header_end % wire.ALIGN == 0
    for name, got in out.items():
        assert got.flags.writeable and np.shares_memory(got, np.frombuffer(data, np.uint8))
        np.testing.assert_array_equal(got, w[name])
    name = next(iter(out))
    out[name][...] = 0  # writes land in the received buffer, nowhere else
    assert not np.any(wire.decode(data)[Key.WEIGHTS][name]) and np.any(w[name])


def test_none_weights_and_empty_messages() -> None:
    assert wire.decode(wire.encode({Key.WEIGHTS: None, Key.DATASET_SIZE: 0})) == {
        "weights": None,
        "dataset_size": 0,
    }
    assert wire.decode(wire.encode({})) == {}


def test_non_contiguous_and_big_endian_arrays() -> None:
    a = np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]
    out = wire.decode(wire.encode({"a": a}))["a"]
    np.testing.assert_array_equal(out, a)


def test_encode_rejects_unsupported_values() -> None:
    with pytest.raises(TypeError, match="dtype"):
        wire.encode({"w": {"x": np.array([object()])}})
    with pytest.raises(TypeError, match="dtype"):
        wire.encode({"w": np.zeros(2, dtype=np.complex64)})
    with pytest.raises(TypeError, match="JSON"):
        wire.encode({"when": object()})


def test_groups_coefficient_and_utility_round_trip() -> None:
    control = {"fc.weight": np.ones((2, 2), np.float32), "fc.bias": np.zeros(2)}
    message = {
        Key.WEIGHTS: _weights(),
        Key.COEFFICIENT: 0.25,
        Key.STAT_UTILITY: 12.5,
        **wire.pack_groups(wire.STATE_PREFIX, {"control": control, "empty": {}}),
        **wire.pack_groups(wire.EXTRAS_PREFIX, {"control": control}),
    }
    assert "state.control" in message and "extras.control" in message
    out = wire.decode(wire.encode(message))
    assert out[Key.COEFFICIENT] == 0.25 and out[Key.STAT_UTILITY] == 12.5
    state = wire.unpack_groups(out, wire.STATE_PREFIX)
    extras = wire.unpack_groups(out, wire.EXTRAS_PREFIX)
    assert set(state) == {"control", "empty"} and state["empty"] == {}
    assert set(extras) == {"control"}
    for group in (state["control"], extras["control"]):
        assert list(group) == list(control)
        for name, value in control.items():
            assert group[name].dtype == value.dtype
            np.testing.assert_array_equal(group[name], value)
    assert wire.unpack_groups(wire.decode(wire.encode({Key.ROUND: 1})), wire.STATE_PREFIX) == {}


def test_datasampler_metadata_round_trips() -> None:
    meta = {"loss_threshold": 0.5, "deadline": None, "selected_len": 3, "sort": "x", "on": True}
    out = wire.decode(wire.encode({Key.ROUND: 2, Key.DATASAMPLER_METADATA: meta}))
    assert out[Key.DATASAMPLER_METADATA] == meta
    assert wire.decode(wire.encode({Key.DATASAMPLER_METADATA: {}}))[Key.DATASAMPLER_METADATA] == {}


@pytest.mark.parametrize(
    "groups", [{"control": np.zeros(2)}, {"control": {"w": [1.0]}}, {"": {"w": np.zeros(1)}}]
)
def test_pack_groups_rejects_a_group_that_is_not_named_arrays(groups: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="must be a named mapping of arrays"):
        wire.pack_groups(wire.EXTRAS_PREFIX, groups)


def _forge(header: object, body: bytes = b"", magic: bytes = wire.MAGIC) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">4sI", magic, len(raw)) + raw + body


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "too short"),
        (pickle.dumps({"weights": [1, 2]}), "bad magic"),
        (_forge({}, magic=b"XXXX"), "bad magic"),
        (struct.pack(">4sI", wire.MAGIC, 1000) + b"{}", "out of bounds"),
        (struct.pack(">4sI", wire.MAGIC, 3) + b"{x}", "not JSON"),
        (_forge([1, 2]), "must be an object"),
        (_forge({"fields": {}, "tensors": {}, "extra": 1}), "must be an object"),
        (_forge({"fields": [], "tensors": {}}), "must be objects"),
        (
            _forge(
                {"fields": {}, "tensors": {"w": [{"name": "a", "dtype": "object", "shape": [1]}]}},
                b"x" * 8,
            ),
            "forbidden dtype",
        ),
        (
            _forge(
                {"fields": {}, "tensors": {"w": [{"name": "a", "dtype": "float32", "shape": [-1]}]}}
            ),
            "invalid shape",
        ),
        (
            _forge(
                {"fields": {}, "tensors": {"w": [{"name": "a", "dtype": "float32", "shape": [4]}]}},
                b"x" * 8,
            ),
            "runs past the end",
        ),
        (
            _forge(
                {"fields": {}, "tensors": {"w": [{"name": "a", "dtype": "float32", "shape": [1]}]}},
                b"x" * 8,
            ),
            "trailing bytes",
        ),
        (
            _forge(
                {
                    "fields": {},
                    "tensors": {"w": [{"name": "a", "dtype": "int8", "shape": [1]}] * 2},
                },
                b"xx",
            ),
            "repeats array",
        ),
        (
            _forge(
                {
                    "fields": {},
                    "tensors": {"w": [{"name": "a", "dtype": "int8", "shape": [2**40, 2**40]}]},
                }
            ),
            "runs past the end",
        ),
        (_forge({"fields": {"round": "3"}, "tensors": {}}), "'round' must be an integer"),
        (_forge({"fields": {"dataset_size": -1}, "tensors": {}}), "must not be negative"),
        (_forge({"fields": {"eot": 1}, "tensors": {}}), "'eot' must be a boolean"),
        (_forge({"fields": {"weights": [1, 2]}, "tensors": {}}), "mapping of named arrays"),
        (_forge({"fields": {"coefficient": 0}, "tensors": {}}), "'coefficient' must be"),
        (_forge({"fields": {"coefficient": -1.5}, "tensors": {}}), "'coefficient' must be"),
        (_forge({"fields": {"coefficient": True}, "tensors": {}}), "'coefficient' must be"),
        (_forge({"fields": {"coefficient": "2"}, "tensors": {}}), "'coefficient' must be"),
        (_forge({"fields": {"coefficient": float("inf")}, "tensors": {}}), "'coefficient' must"),
        (_forge({"fields": {"stat_utility": "high"}, "tensors": {}}), "'stat_utility' must be"),
        (_forge({"fields": {"stat_utility": float("nan")}, "tensors": {}}), "'stat_utility'"),
        (
            _forge({"fields": {"datasampler_metadata": [1.0]}, "tensors": {}}),
            "'datasampler_metadata' must be an object",
        ),
        (
            _forge({"fields": {"datasampler_metadata": {"deadline": [1]}}, "tensors": {}}),
            "'datasampler_metadata' entry 'deadline' must be",
        ),
        (
            _forge({"fields": {"datasampler_metadata": {"a": {"b": 1}}}, "tensors": {}}),
            "entry 'a' must be",
        ),
        (
            _forge({"fields": {"datasampler_metadata": {"loss": float("nan")}}, "tensors": {}}),
            "entry 'loss' must be",
        ),
        (
            _forge(
                {
                    "fields": {},
                    "tensors": {
                        "datasampler_metadata": [{"name": "a", "dtype": "int8", "shape": [1]}]
                    },
                },
                b"x",
            ),
            "entry 'a' must be",
        ),
        (_forge({"fields": {"state.control": 3}, "tensors": {}}), "'state.control' must be"),
        (_forge({"fields": {"extras.control": {"w": 1}}, "tensors": {}}), "'extras.control'"),
        (_forge({"fields": {"state.": {}}, "tensors": {}}), "'state.' must be"),
        (
            _forge(
                {
                    "fields": {},
                    "tensors": {"extras.control": [{"name": None, "dtype": "int8", "shape": [1]}]},
                },
                b"x",
            ),
            "'extras.control' must be a named mapping of arrays",
        ),
    ],
)
def test_decode_rejects_malformed_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        wire.decode(payload)


def test_decode_enforces_the_size_limit() -> None:
    data = wire.encode({Key.WEIGHTS: {"w": np.zeros(1000, dtype=np.float32)}})
    with pytest.raises(WireError, match="exceeds the limit"):
        wire.decode(data, max_bytes=1000)
    assert wire.decode(data, max_bytes=len(data))[Key.WEIGHTS]["w"].shape == (1000,)


def test_every_truncation_is_rejected() -> None:
    data = wire.encode({Key.WEIGHTS: _weights(), Key.ROUND: 1})
    for cut in range(0, len(data), 7):
        with pytest.raises(WireError):
            wire.decode(data[:cut])
