"""Lenient reading of hand-written files: drop keys a model does not know (e.g. "//" comments)."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def prune(annotation: Any, data: Any, where: str = "") -> tuple[Any, list[str]]:
    """Return `data` without the object keys unknown to `annotation`, and the dropped key paths."""
    dropped: list[str] = []
    return _prune(annotation, data, where, dropped), dropped


def _prune(annotation: Any, data: Any, where: str, dropped: list[str]) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        models = [a for a in get_args(annotation) if _is_model(a)]
        return _prune(models[0], data, where, dropped) if len(models) == 1 else data
    if origin is list and isinstance(data, list):
        (item,) = get_args(annotation) or (Any,)
        return [_prune(item, v, f"{where}[{i}]", dropped) for i, v in enumerate(data)]
    if origin is dict and isinstance(data, dict):
        _, value = get_args(annotation) or (Any, Any)
        return {k: _prune(value, v, _join(where, k), dropped) for k, v in data.items()}
    if _is_model(annotation) and isinstance(data, dict):
        return _prune_model(annotation, data, where, dropped)
    return data


def _prune_model(
    model: type[BaseModel], data: dict[str, Any], where: str, dropped: list[str]
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        fields[name] = info.annotation
        if info.alias:
            fields[info.alias] = info.annotation
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in fields:
            out[key] = _prune(fields[key], value, _join(where, key), dropped)
        else:
            dropped.append(_join(where, key))
    return out


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
