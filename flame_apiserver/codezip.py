"""Safe handling of design code zips: validation on upload, per-role extraction for agents."""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass

from schemas.errors import Invalid, NotFound, TooLarge

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ZipLimits:
    """Bounds applied to every code zip (compressed size is checked by the caller)."""

    max_files: int
    max_unpacked_bytes: int


def _clean_name(raw: str) -> str:
    """Return the entry path, or raise Invalid for anything that could escape the extraction dir."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise Invalid(f"code zip entry {raw!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Invalid(f"code zip entry {raw!r} climbs out of its directory ('..')")
    return "/".join(parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


def _open(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise Invalid(f"code is not a valid zip archive: {exc}") from exc


def _checked_entries(zf: zipfile.ZipFile, limits: ZipLimits) -> list[tuple[zipfile.ZipInfo, str]]:
    """Validate every entry's metadata; returns (info, clean path) of the files (not dirs)."""
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise TooLarge(f"code zip has {len(infos)} entries; the limit is {limits.max_files}")
    seen: set[str] = set()
    files: list[tuple[zipfile.ZipInfo, str]] = []
    declared = 0
    for info in infos:
        name = _clean_name(info.filename)
        if _is_symlink(info):
            raise Invalid(f"code zip entry {info.filename!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise Invalid(f"code zip entry {info.filename!r} is encrypted")
        if info.is_dir() or not name:
            continue
        if "/" not in name:
            raise Invalid(
                f"code zip entry {info.filename!r} is at the root; every file must live under "
                "a top-level directory named after its role (e.g. trainer/main.py)"
            )
        if name in seen:
            raise Invalid(f"code zip has entry {name!r} more than once")
        seen.add(name)
        declared += info.file_size
        if declared > limits.max_unpacked_bytes:
            raise TooLarge(f"code zip unpacks to more than {limits.max_unpacked_bytes} bytes")
        files.append((info, name))
    return files


def _read_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """Decompress one entry, never producing more than `budget` bytes (lying headers)."""
    out = bytearray()
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(_CHUNK):
                out += chunk
                if len(out) > budget:
                    raise TooLarge(
                        f"code zip unpacks to more than the allowed size ({budget} bytes)"
                    )
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        OSError,
        EOFError,
    ) as exc:
        raise Invalid(f"code zip entry {info.filename!r} is corrupt: {exc}") from exc
    return bytes(out)


def validate_code_zip(data: bytes, limits: ZipLimits) -> tuple[str, ...]:
    """Check a whole code zip (layout, paths, sizes, CRCs); returns its role directories.

    Raises Invalid (unsafe or malformed) or TooLarge (too many entries, unpacks too big).
    """
    with _open(data) as zf:
        files = _checked_entries(zf, limits)
        if not files:
            raise Invalid("code zip holds no files")
        budget = limits.max_unpacked_bytes
        for info, _ in files:
            budget -= len(_read_bounded(zf, info, budget))
    return tuple(sorted({name.split("/", 1)[0] for _, name in files}))


def role_zip(data: bytes, role: str, limits: ZipLimits) -> bytes:
    """A zip of only the `<role>/...` files of a stored code zip (paths kept); NotFound if none."""
    out = io.BytesIO()
    count = 0
    with _open(data) as zf, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dest:
        budget = limits.max_unpacked_bytes
        for info, name in _checked_entries(zf, limits):
            if name.split("/", 1)[0] != role:
                continue
            content = _read_bounded(zf, info, budget)
            budget -= len(content)
            entry = zipfile.ZipInfo(name, date_time=info.date_time)
            entry.external_attr = (stat.S_IFREG | 0o644) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            dest.writestr(entry, content)
            count += 1
    if count == 0:
        raise NotFound(f"the job's code has no directory for role '{role}'")
    return out.getvalue()
