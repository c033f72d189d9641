"""docs/settings.md from FlameSettings: `python -m flame_common.settings_doc [--write]`."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flame_common import gendoc
from flame_common import settings as settings_module
from flame_common.settings import FlameSettings

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
COMMAND = "python -m flame_common.settings_doc --write"


@dataclass
class Setting:
    name: str
    annotation: str
    note: str  # the comment on the field's line


@dataclass
class Section:
    """The fields below one comment block of the class body (up to the next block)."""

    text: str
    settings: list[Setting] = field(default_factory=list)


def sections() -> list[Section]:
    """FlameSettings' fields, grouped under the comment blocks that precede them in the source."""
    path = Path(settings_module.__file__)
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    cls = next(
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == FlameSettings.__name__
    )
    found: list[Section] = [Section("")]
    previous_end = cls.lineno
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            previous_end = node.end_lineno or node.lineno
            continue
        block = [
            line.strip().removeprefix("#").strip()
            for line in lines[previous_end : node.lineno - 1]
            if line.strip().startswith("#")
        ]
        if block:
            found.append(Section(" ".join(block)))
        end = lines[(node.end_lineno or node.lineno) - 1]
        note = end.split("  # ", 1)[1].strip() if "  # " in end else ""
        found[-1].settings.append(Setting(node.target.id, ast.unparse(node.annotation), note))
        previous_end = node.end_lineno or node.lineno
    return [s for s in found if s.settings]


def default(name: str) -> str:
    value: Any = FlameSettings.model_fields[name].get_default(call_default_factory=True)
    if isinstance(value, Path):
        home = Path.home()
        return f"`~/{value.relative_to(home)}`" if value.is_relative_to(home) else f"`{value}`"
    if value == "":
        return '`""`'
    text = json.dumps(value) if isinstance(value, list | dict | bool) else str(value)
    return f"`{text}`"


def render() -> str:
    out = [
        "# Settings",
        "",
        "Every service, `flame up`, flamelets and the SDK read their configuration from `FLAME_*`",
        "environment variables (`flame_common/settings.py`, `FlameSettings`, pydantic-settings:",
        "lists and dicts are JSON). Generated from that file; regenerate with",
        f"`{COMMAND}` (the test `tests/test_settings_doc.py` fails when it is stale).",
        "",
    ]
    for section in sections():
        if section.text:
            out += [section.text, ""]
        out += ["| Variable | Type | Default | Note |", "|---|---|---|---|"]
        for s in section.settings:
            kind = s.annotation.replace("|", "\\|")
            note = s.note.replace("|", "\\|")
            out.append(f"| `FLAME_{s.name.upper()}` | `{kind}` | {default(s.name)} | {note} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    gendoc.run(DOC, render, argv)


if __name__ == "__main__":
    main()
