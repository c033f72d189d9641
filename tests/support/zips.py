"""Code-zip builders: design code (one folder per role holding main.py) and odd or unsafe shapes."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

ROLE_SCRIPTS = Path(__file__).parents[1] / "agents" / "data" / "roles"

Entries = Mapping[str, bytes | str] | Iterable[tuple[str | zipfile.ZipInfo, bytes | str]]


def make_zip(entries: Entries, *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of these entries, written as given (names are not checked: any shape can be built).

    `entries` maps names to contents, or lists (name or ZipInfo, contents) pairs, which may repeat
    a name (zipfile warns about it).
    """
    items = entries.items() if isinstance(entries, Mapping) else entries
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return out.getvalue()


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, str]:
    """An entry that unpacks as a symbolic link `name` -> `target` (for `make_zip`)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix, so the mode bits are read
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def code_zip(roles: Mapping[str, str | Path]) -> bytes:
    """Design code: `<role>/main.py` per role; the value is the script's source or a file of it."""
    return make_zip(
        {
            f"{role}/main.py": source.read_text() if isinstance(source, Path) else source
            for role, source in roles.items()
        }
    )


def role_script(name: str) -> Path:
    """`main.py` of the test role script `tests/agents/data/roles/<name>`."""
    path = ROLE_SCRIPTS / name / "main.py"
    if not path.is_file():
        raise FileNotFoundError(f"no test role script {name!r} (looked for {path})")
    return path


def scripted_zip(roles: Mapping[str, str]) -> bytes:
    """Design code whose roles run test role scripts by name: {"trainer": "sleep", ...}."""
    return code_zip({role: role_script(name) for role, name in roles.items()})
