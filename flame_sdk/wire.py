"""Message encoding: a dict of named fields -> bytes (JSON header + raw array buffers); no pickle.

Layout: ``b"FLM1"`` | header length (u32, big endian) | header (UTF-8 JSON) | array buffers.
The header holds the JSON fields and, per tensor field, the ordered list of its arrays
(name, dtype, shape); buffers follow in that order, C-contiguous, little endian. The encoder
pads the header with spaces so that the first buffer starts at a multiple of `ALIGN` bytes.
A tensor field is either one array or a `Weights` mapping of named arrays; groups of such
mappings (server state, upload extras) travel as one field per group under a prefix
(`pack_groups` / `unpack_groups`, e.g. `"state.control"`).
`encode_parts` returns the message as a list of buffers (the arrays' own memory, no copy) for
backends that send parts; `decode` returns arrays that view the received buffer (writable
when the buffer is, e.g. a `bytearray`; read-only over `bytes`).
`decode` trusts nothing: every inconsistency raises `WireError`, which the channel layer
turns into "drop the message and log".
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import numpy as np

from schemas.errors import BadRequest

MAGIC = b"FLM1"
_PREFIX = struct.Struct(">4sI")
ALIGN = 64
MAX_HEADER_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 2 * 1024 * 1024 * 1024

ALLOWED_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
    | {"float16", "float32", "float64"}
)
_WIRE_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in ALLOWED_DTYPES}  # on the wire
_NAMES = {np.dtype(name): name for name in ALLOWED_DTYPES}  # native dtype -> wire name


class Key(StrEnum):
    """Well-known message keys; other string keys are allowed for extensions."""

    WEIGHTS = "weights"
    EOT = "eot"
    DATASET_SIZE = "dataset_size"
    ROUND = "round"
    MODEL_VERSION = "model_version"
    DATASAMPLER_METADATA = "datasampler_metadata"
    STAT_UTILITY = "stat_utility"
    COEFFICIENT = "coefficient"


STATE_PREFIX = "state."
"""Prefix of the optimizer's server state (`Optimizer.server_state()`), sent with the model."""
EXTRAS_PREFIX = "extras."
"""Prefix of a trainer's upload extras (`Regularizer.after_training`), sent with its delta."""

_INT_KEYS = (Key.DATASET_SIZE, Key.ROUND, Key.MODEL_VERSION)
_GROUP_PREFIXES = (STATE_PREFIX, EXTRAS_PREFIX)


class WireError(BadRequest):
    """A received payload is not a valid Flame message (corrupt, oversized, foreign)."""


Message = dict[str, Any]
Buffer = bytes | bytearray | memoryview


def encode(message: Mapping[str, Any]) -> bytes:
    """Serialize a message into one `bytes` (see `encode_parts`)."""
    return b"".join(encode_parts(message))


def encode_parts(message: Mapping[str, Any]) -> list[Buffer]:
    """Serialize a message as buffers whose concatenation is the encoded message.

    Values are JSON data, an ndarray, or a mapping of ndarrays. The array parts are views of
    the arrays themselves (a copy only for non-contiguous or big-endian ones): they must not
    change until the parts are sent.
    """
    fields: dict[str, Any] = {}
    tensors: dict[str, list[dict[str, Any]]] = {}
    buffers: list[np.ndarray] = []
    for key, value in message.items():
        if not isinstance(key, str):
            raise TypeError(f"message keys must be strings, got {key!r}")
        key = str(key)
        if isinstance(value, np.ndarray):
            tensors[key] = [_describe(None, value, buffers)]
        elif isinstance(value, Mapping) and value and _all_arrays(value):
            tensors[key] = [_describe(str(n), a, buffers) for n, a in value.items()]
        else:
            fields[key] = value
    try:
        header = json.dumps({"fields": fields, "tensors": tensors}, allow_nan=True).encode()
    except TypeError as exc:
        raise TypeError(f"message field is not JSON data nor arrays: {exc}") from exc
    header += b" " * (-(_PREFIX.size + len(header)) % ALIGN)
    parts: list[Buffer] = [_PREFIX.pack(MAGIC, len(header)) + header]
    parts += [b.data.cast("B") for b in buffers if b.nbytes]
    return parts


def decode(
    data: bytes | bytearray | memoryview, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Message:
    """Parse and validate a message; arrays view `data` (writable only if `data` is)."""
    view = memoryview(data)
    if len(view) > max_bytes:
        raise WireError(f"message of {len(view)} bytes exceeds the limit of {max_bytes}")
    if len(view) < _PREFIX.size:
        raise WireError("message too short")
    magic, header_len = _PREFIX.unpack(view[: _PREFIX.size])
    if magic != MAGIC:
        raise WireError("not a Flame message (bad magic)")
    if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len > len(view):
        raise WireError("header length out of bounds")
    start = _PREFIX.size + header_len
    try:
        header = json.loads(bytes(view[_PREFIX.size : start]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or set(header) != {"fields", "tensors"}:
        raise WireError("header must be an object with 'fields' and 'tensors'")
    fields, tensors = header["fields"], header["tensors"]
    if not isinstance(fields, dict) or not isinstance(tensors, dict):
        raise WireError("header 'fields' and 'tensors' must be objects")
    message: Message = dict(fields)
    offset = start
    for key, specs in tensors.items():
        if key in message or not isinstance(specs, list) or not specs:
            raise WireError(f"tensor field '{key}' is malformed or duplicated")
        arrays: dict[str, np.ndarray] = {}
        for spec in specs:
            name, array, offset = _read_array(spec, view, offset, key)
            if name is None:
                if len(specs) != 1:
                    raise WireError(f"tensor field '{key}' mixes a bare array with named ones")
                message[key] = array
            else:
                if name in arrays:
                    raise WireError(f"tensor field '{key}' repeats array '{name}'")
                arrays[name] = array
        if key not in message:
            message[key] = arrays
    if offset != len(view):
        raise WireError(f"{len(view) - offset} trailing bytes after the last array")
    _check_known_keys(message)
    return message


def pack_groups(
    prefix: str, groups: Mapping[str, Mapping[str, np.ndarray]]
) -> dict[str, dict[str, np.ndarray]]:
    """`{prefix + name: arrays}`: one message field per named group of arrays (a field is a
    single level mapping); TypeError when a group is not a mapping of named arrays."""
    fields: dict[str, dict[str, np.ndarray]] = {}
    for name, arrays in groups.items():
        if not name or not isinstance(arrays, Mapping) or not _all_arrays(arrays):
            raise TypeError(f"group {name!r} under {prefix!r} must be a named mapping of arrays")
        fields[prefix + name] = dict(arrays)
    return fields


def unpack_groups(message: Mapping[str, Any], prefix: str) -> dict[str, dict[str, np.ndarray]]:
    """The groups `pack_groups` put under `prefix` in a decoded message (which checked them)."""
    return {key[len(prefix) :]: value for key, value in message.items() if key.startswith(prefix)}


def _all_arrays(value: Mapping[Any, Any]) -> bool:
    return all(isinstance(v, np.ndarray) for v in value.values())


def _describe(name: str | None, array: np.ndarray, buffers: list[np.ndarray]) -> dict[str, Any]:
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    wire_name = _NAMES.get(dtype)  # a dict lookup: `dtype.name` is slow for small messages
    if wire_name is None:
        raise TypeError(f"array '{name}' has unsupported dtype {array.dtype}")
    if dtype is array.dtype and array.flags.c_contiguous:
        buffers.append(array)
    else:
        buffers.append(np.ascontiguousarray(array, dtype=dtype))
    return {"name": name, "dtype": wire_name, "shape": list(array.shape)}


def _read_array(
    spec: Any, view: memoryview, offset: int, key: str
) -> tuple[str | None, np.ndarray, int]:
    if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape"}:
        raise WireError(f"tensor field '{key}' has a malformed array description")
    name, dtype_name, shape = spec["name"], spec["dtype"], spec["shape"]
    if name is not None and not isinstance(name, str):
        raise WireError(f"tensor field '{key}' has a non-string array name")
    dtype = _WIRE_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise WireError(f"array '{name}' of '{key}' has forbidden dtype {dtype_name!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise WireError(f"array '{name}' of '{key}' has an invalid shape {shape!r}")
    size = math.prod(shape)
    nbytes = size * dtype.itemsize
    if offset + nbytes > len(view):
        raise WireError(f"array '{name}' of '{key}' runs past the end of the message")
    array = np.frombuffer(view[offset : offset + nbytes], dtype=dtype).reshape(shape)
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    return name, array, offset + nbytes


def _check_known_keys(message: Message) -> None:
    for key in _INT_KEYS:
        value = message.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise WireError(f"'{key}' must be an integer, got {value!r}")
    size = message.get(Key.DATASET_SIZE)
    if size is not None and size < 0:
        raise WireError("'dataset_size' must not be negative")
    eot = message.get(Key.EOT)
    if eot is not None and not isinstance(eot, bool):
        raise WireError(f"'eot' must be a boolean, got {eot!r}")
    weights = message.get(Key.WEIGHTS)
    if weights is not None and not isinstance(weights, dict):
        raise WireError("'weights' must be a mapping of named arrays")
    coefficient = message.get(Key.COEFFICIENT)
    if coefficient is not None and not (_is_number(coefficient) and coefficient > 0):
        raise WireError(f"'coefficient' must be a positive number, got {coefficient!r}")
    utility = message.get(Key.STAT_UTILITY)
    if utility is not None and not _is_number(utility):
        raise WireError(f"'stat_utility' must be a finite number, got {utility!r}")
    meta = message.get(Key.DATASAMPLER_METADATA)
    if meta is not None:
        _check_metadata(meta)
    for name, value in message.items():
        if name.startswith(_GROUP_PREFIXES) and (
            name in _GROUP_PREFIXES or not isinstance(value, dict) or not _all_arrays(value)
        ):
            raise WireError(f"'{name}' must be a named mapping of arrays")


def _check_metadata(meta: Any) -> None:
    """`datasampler_metadata` is an object of JSON scalars (finite numbers, strings, booleans,
    null)."""
    if not isinstance(meta, dict):
        raise WireError(f"'datasampler_metadata' must be an object, got {meta!r}")
    for name, value in meta.items():
        if not (value is None or isinstance(value, str | bool) or _is_number(value)):
            raise WireError(
                f"'datasampler_metadata' entry {name!r} must be a finite number, a string, a "
                f"boolean or null, got {value!r}"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
