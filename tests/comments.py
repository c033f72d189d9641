"""Flame's mnist user files with a key added to one of their objects: `//` comments and typos."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

MNIST = Path(__file__).parent / "data" / "flame_examples" / "mnist"

Where = tuple[str | int, ...]  # path from the top of a file to one of its JSON objects

# (file, object) for every kind of user file: the top-level object and nested ones. job.json
# nests objects only with inline specs (`dataSpec`/`modelSpec` instead of the *Path keys).
CASES: list[tuple[str, Where]] = [
    ("schema.json", ()),
    ("schema.json", ("roles", 1)),
    ("schema.json", ("channels", 0, "groupBy")),
    ("dataset.json", ()),
    ("job.json", ()),
    ("job.json", ("modelSpec", "baseModel")),
    ("job.json", ("dataSpec", 0)),
    ("dataSpec.json", (0,)),
    ("modelSpec.json", ()),
    ("modelSpec.json", ("baseModel",)),
    ("modelSpec.json", ("selector",)),
]


def case_id(file: str, where: Where) -> str:
    return ".".join([file.removesuffix(".json"), *map(str, where)])


def read(file: str) -> Any:
    return json.loads((MNIST / file).read_text())


def inline_job() -> dict[str, Any]:
    """The mnist job.json with its dataSpec and modelSpec inline."""
    job = {k: v for k, v in read("job.json").items() if not k.endswith("Path")}
    return {**job, "dataSpec": read("dataSpec.json"), "modelSpec": read("modelSpec.json")}


def with_key(data: Any, where: Where, key: str, value: Any = "a note") -> Any:
    """A copy of `data` with `key` added to the object at `where`."""
    out = copy.deepcopy(data)
    target = out
    for step in where:
        target = target[step]
    target[key] = value
    return out


def example_dir(root: Path, file: str, where: Where) -> Path:
    """A copy of the mnist files in `root` (job.json inline when `where` is inside it)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("schema.json", "dataset.json", "job.json", "dataSpec.json", "modelSpec.json"):
        shutil.copy(MNIST / name, root / name)
    if file == "job.json" and where:
        (root / "job.json").write_text(json.dumps(inline_job()))
    return root


def add_key(path: Path, where: Where, key: str) -> None:
    """Add `key` to the object at `where` of the JSON file `path`."""
    path.write_text(json.dumps(with_key(json.loads(path.read_text()), where, key), indent=2))


def dotted(where: Where, key: str) -> str:
    """How error messages name the field `key` of the object at `where`."""
    return ".".join([*map(str, where), key])


def request_body(file: str, where: Where) -> tuple[str, Any, Where]:
    """The REST body that carries `file` (a job's carries its dataSpec and modelSpec inline)
    and the path of the object at `where` inside it."""
    if file in ("schema.json", "dataset.json"):
        return file, read(file), where
    inside: Where = {
        "job.json": (),
        "dataSpec.json": ("dataSpec",),
        "modelSpec.json": ("modelSpec",),
    }[file]
    return "job.json", inline_job(), (*inside, *where)
