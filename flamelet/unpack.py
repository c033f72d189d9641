"""Safe extraction of a role's code archive: no traversal, absolute paths, links or oversize."""

from __future__ import annotations

import io
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_ENTRIES = 10_000
_CHUNK = 64 * 1024


class UnsafeArchive(ValueError):
    """The archive is not acceptable; the message names the offending entry."""


def _member_path(name: str) -> PurePosixPath:
    if "\\" in name or "\x00" in name:
        raise UnsafeArchive(f"entry '{name}' has a backslash or NUL in its name")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise UnsafeArchive(f"entry '{name}' is an absolute path")
    if any(part == ".." for part in path.parts):
        raise UnsafeArchive(f"entry '{name}' escapes the work directory")
    return path


def _check(info: zipfile.ZipInfo) -> PurePosixPath:
    path = _member_path(info.filename)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(f"entry '{info.filename}' is a symbolic link")
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UnsafeArchive(f"entry '{info.filename}' is not a regular file")
    return path


def unpack_zip(data: bytes, dest: Path, *, max_bytes: int = MAX_UNPACKED_BYTES) -> list[Path]:
    """Extract `data` (a zip) below `dest`; validates every entry before writing anything."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UnsafeArchive(f"code archive is not a zip file: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise UnsafeArchive(f"code archive has {len(infos)} entries (limit {MAX_ENTRIES})")
        plan = [(info, _check(info)) for info in infos]
        declared = sum(info.file_size for info, _ in plan)
        if declared > max_bytes:
            raise UnsafeArchive(f"code archive unpacks to {declared} bytes (limit {max_bytes})")
        root = dest.resolve()
        written: list[Path] = []
        total = 0
        for info, rel in plan:
            target = root.joinpath(*rel.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise UnsafeArchive(f"entry '{info.filename}' appears twice")
            try:
                with archive.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(_CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise UnsafeArchive(
                                f"code archive unpacks to more than {max_bytes} bytes"
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise UnsafeArchive(f"entry '{info.filename}' is corrupt: {exc}") from None
            written.append(target)
        return written
